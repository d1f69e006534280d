//! The public API's trait promises, checked by the compiler and on real
//! sockets: the handles and their futures are `Send` (so `tokio::spawn`
//! takes them) and the data types `Send + Sync`; `Connection` is a cheap
//! `Clone` handle (the RFC's Clone is `clone_in_group`); names parse with
//! `FromStr` as with `parse`.
// Native only: in the browser, handles hold JavaScript objects (not Send).
#![cfg(not(all(target_arch = "wasm32", target_os = "unknown")))]

mod common;

use postsocket::{
    CandidateFailure, Connection, ConnectionEvent, ConnectionProperties, Error, ErrorReason,
    Listener, ListenerEvent, ListenerLimits, LocalEndpoint, MessageContext, MessageProperties,
    Preconnection, Preference, RacingTrace, ReceiveEvent, RemoteEndpoint, SecurityParameters,
    StackId, TransportContext, TransportProperties,
};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn send_sync<T: Send + Sync>() {}
fn send<T: Send>(t: T) -> T {
    t
}

/// Compiled, never run: the futures an application spawns are `Send`.
#[allow(dead_code, unused_must_use)]
fn futures_are_send(pre: &Preconnection, conn: &Connection, l: &Listener) {
    send(pre.initiate());
    send(pre.initiate_with_send("hi", None));
    send(pre.listen());
    send(conn.send_message("hi"));
    send(conn.receive());
    send(conn.next_event());
    send(conn.close());
    send(conn.clone_in_group(None, None));
    send(l.accept());
    send(l.next_event());
}

#[test]
fn handles_and_data_are_send_and_sync() {
    send_sync::<Preconnection>();
    send_sync::<Connection>();
    send_sync::<Listener>();
    send_sync::<TransportContext>();
    send_sync::<Error>();
    send_sync::<CandidateFailure>();
    send_sync::<RacingTrace>();
    send_sync::<TransportProperties>();
    send_sync::<ConnectionProperties>();
    send_sync::<MessageProperties>();
    send_sync::<MessageContext>();
    send_sync::<SecurityParameters>();
    send_sync::<ListenerLimits>();
    send_sync::<RemoteEndpoint>();
    send_sync::<LocalEndpoint>();
    send_sync::<ConnectionEvent>();
    send_sync::<ListenerEvent>();
    send_sync::<ReceiveEvent>();
}

#[test]
fn names_parse_with_from_str() {
    assert_eq!("quic".parse::<StackId>().unwrap(), StackId::Quic);
    assert_eq!(
        "prohibit".parse::<Preference>().unwrap(),
        Preference::Prohibit
    );
    let r: RemoteEndpoint = "127.0.0.1:443".parse().unwrap();
    assert_eq!(r, RemoteEndpoint::parse("127.0.0.1:443").unwrap());
    let e = "carrier-pigeon".parse::<StackId>().unwrap_err();
    assert_eq!(e.reason, ErrorReason::InvalidConfiguration, "{e}");
    assert!(e.to_string().contains("carrier-pigeon"), "{e}");
    assert!("sometimes".parse::<Preference>().is_err());
}

/// Two handles of one Connection: one task sends, another receives; the
/// Connection outlives the first handle dropped and ends with the last.
/// The peer is a plain tokio echo server.
#[tokio::test]
async fn connection_handles_share_one_connection() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let peer = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 64];
        // Echo until the client's end of stream, then report the end.
        loop {
            let n = s.read(&mut buf).await.unwrap();
            if n == 0 {
                return "end of stream";
            }
            s.write_all(&buf[..n]).await.unwrap();
        }
    });
    let conn = common::tcp_lines(vec![common::remote(addr)])
        .initiate()
        .await
        .unwrap();
    let receiver = conn.clone();
    let reader = tokio::spawn(async move {
        let mut got = Vec::new();
        for _ in 0..3 {
            let m = receiver.receive().await.unwrap();
            got.push(String::from_utf8(m.into_data().to_vec()).unwrap());
        }
        got
    });
    let sender = conn.clone();
    tokio::spawn(async move {
        for m in ["one", "two", "three"] {
            sender.send_message(m).await.unwrap();
        }
    })
    .await
    .unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), reader)
        .await
        .expect("three Messages within 5 s")
        .unwrap();
    assert_eq!(got, ["one", "two", "three"]);
    // The handles moved into the tasks are gone; this one still works ...
    conn.send_message("four").await.unwrap();
    let m = conn.receive().await.unwrap();
    assert_eq!(&m.into_data()[..], b"four");
    // ... and dropping the last one ends the Connection.
    drop(conn);
    let end = tokio::time::timeout(Duration::from_secs(5), peer)
        .await
        .expect("the peer sees the end within 5 s")
        .unwrap();
    assert_eq!(end, "end of stream");
}

/// One builder style: a Preconnection built by chaining `with_*` and one
/// built with `set_*` / `add_*` in place are the same, and the chained one
/// connects (to a plain tokio echo server). A value refused by name is
/// refused by `with` as by `set`.
#[tokio::test]
async fn builders_chain_like_setters() {
    use postsocket::framer::DelimiterFramer;
    use postsocket::{ConnectionProperties, ListenerLimits, MessageProperties};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let (mut r, mut w) = s.split();
        let _ = tokio::io::copy(&mut r, &mut w).await;
    });
    let props = TransportProperties::new()
        .with("preserveOrder", "require")
        .unwrap()
        .with_preference(
            postsocket::SelectionProperty::Multistreaming,
            Preference::Avoid,
        );
    let ctx = TransportContext::new();
    let chained = Preconnection::new(
        vec![],
        vec![common::remote(addr)],
        props.clone(),
        SecurityParameters::disabled(),
    )
    .with_framer(DelimiterFramer::line())
    .with_protocols(vec![StackId::Tcp])
    .with_connection_attempt_delay(Duration::from_millis(100))
    .with_transport_context(ctx.clone())
    .with_listener_limits(ListenerLimits::default().with_pending_incoming(8));
    let mut set = Preconnection::new(vec![], vec![], props, SecurityParameters::disabled());
    set.add_remote([common::remote(addr)])
        .add_framer(DelimiterFramer::line())
        .set_protocols(vec![StackId::Tcp])
        .set_connection_attempt_delay(Duration::from_millis(100))
        .set_transport_context(ctx)
        .set_listener_limits(ListenerLimits::default().with_pending_incoming(8));
    assert_eq!(format!("{chained:?}"), format!("{set:?}"));
    assert_eq!(chained.listener_limits().pending_incoming(), 8);
    let conn = chained.initiate().await.unwrap();
    conn.send_message("built").await.unwrap();
    let m = tokio::time::timeout(Duration::from_secs(5), conn.receive())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&m.into_data()[..], b"built");
    // Refused by name: the same error from `with` as from `set`.
    let e = TransportProperties::new()
        .with("colour", "blue")
        .unwrap_err();
    assert_eq!(e.reason, ErrorReason::InvalidConfiguration, "{e}");
    assert!(e.message.contains("colour"), "{e}");
    assert!(ConnectionProperties::default()
        .with("connTimeout", 1_000u64)
        .is_ok());
    assert!(MessageProperties::default()
        .with("msgLifetime", "soon")
        .is_err());
    let sec = SecurityParameters::new()
        .with("serverName", &["example.com"])
        .unwrap();
    assert_eq!(sec.server_name.as_deref(), Some("example.com"));
    assert!(SecurityParameters::new().with("nonsense", &[]).is_err());
}

/// A Preconnection keeps its stack selection between Initiates; every
/// change to what selection reads starts it over: after a TCP Initiate,
/// restricting the protocols to QUIC (refused: QUIC needs security, which
/// is disabled here) and then prohibiting reliability each change the
/// outcome. The peer is a plain tokio echo server.
#[tokio::test]
async fn a_selection_kept_between_initiates_follows_every_change() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    let mut pre = common::tcp_lines(vec![common::remote(addr)]);
    for _ in 0..2 {
        let conn = pre.initiate().await.unwrap();
        assert_eq!(conn.stack(), StackId::Tcp);
    }
    pre.set_protocols(vec![StackId::Quic]);
    let e = pre.initiate().await.unwrap_err();
    assert_eq!(e.reason, ErrorReason::NoCandidates, "{e}");
    pre.set_protocols(vec![StackId::Tcp, StackId::Udp]);
    assert_eq!(pre.initiate().await.unwrap().stack(), StackId::Tcp);
    let props = pre.transport_properties_mut();
    props.set("reliability", "prohibit").unwrap();
    props.set("preserveOrder", "noPreference").unwrap();
    props.set("congestionControl", "noPreference").unwrap();
    let conn = pre.initiate().await.unwrap();
    assert_eq!(conn.stack(), StackId::Udp, "reliability prohibited: UDP");
}
