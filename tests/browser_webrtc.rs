//! The browser WebRTC stack, in headless Chromium (wasm-bindgen-test),
//! against postsocket's native str0m peer (`webrtc-echo`), and browser to browser in one
//! page (the answerer side and the Listener of the peer's channels).
//!
//! `scripts/test.sh` runs the echo peer, chromedriver and Chromium inside one
//! network namespace with only loopback (`unshare -n`), starts
//! `native-examples/src/bin/webrtc-echo.rs`, and passes its signaling URL at
//! compile time: `POSTSOCKET_WEBRTC_SIGNALING=http://127.0.0.1:P/offer`.
//! Chromium needs `--allow-loopback-in-peer-connection
//! --use-fake-ui-for-media-stream` to gather loopback candidates (without the
//! first it gathers none on loopback; without the second it asks for media
//! permission).
#![cfg(all(target_arch = "wasm32", target_os = "unknown"))]

use postsocket::{
    Connection, ErrorReason, HttpSignaling, Preconnection, PropertyValue, SecurityParameters,
    SendFailure, StackId, TransportProperties,
};
use std::time::Duration;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

fn signaling_url() -> &'static str {
    option_env!("POSTSOCKET_WEBRTC_SIGNALING").unwrap_or_else(|| {
        panic!(
            "POSTSOCKET_WEBRTC_SIGNALING is not set: run scripts/test.sh (it starts webrtc-echo)"
        )
    })
}

async fn rendezvous(props: TransportProperties) -> Connection {
    let pre = Preconnection::new(vec![], vec![], props, SecurityParameters::new());
    let done = pre
        .rendezvous(HttpSignaling::new(signaling_url()))
        .await
        .unwrap_or_else(|e| panic!("rendezvous: {e}"));
    assert_eq!(done.connection.stack(), StackId::Webrtc);
    done.connection
}

async fn roundtrip(c: &Connection, msg: &[u8]) {
    c.send_message(msg.to_vec())
        .await
        .unwrap_or_else(|e| panic!("send: {e:?}"));
    let r = c
        .receive()
        .await
        .unwrap_or_else(|e| panic!("receive: {e:?}"));
    assert_eq!(r.data(), msg, "the echo differs");
}

fn na() -> PropertyValue {
    PropertyValue::Text("notApplicable".into())
}

#[wasm_bindgen_test]
async fn data_channel_echo_with_the_native_peer() {
    let c = rendezvous(TransportProperties::new()).await;
    // Read from the browser's RTCDataChannel: a reliable, ordered channel.
    assert_eq!(c.get("webrtc.ordered").unwrap(), PropertyValue::Bool(true));
    assert_eq!(c.get("webrtc.maxRetransmits").unwrap(), na());
    assert_eq!(c.get("webrtc.maxPacketLifeTime").unwrap(), na());
    for i in 0..10u32 {
        roundtrip(&c, format!("message {i}").as_bytes()).await;
    }
    for len in [100_000u32, 250_000] {
        let big: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        roundtrip(&c, &big).await;
    }
    // Over the data channel's 256 KiB message limit: a clear error, nothing sent.
    match c.send_message(vec![0u8; 300_000]).await {
        Err(SendFailure::SendError { error, .. }) => {
            assert_eq!(error.reason, ErrorReason::MessageTooLarge, "{error}")
        }
        other => panic!("a 300 KB message: expected MessageTooLarge, got {other:?}"),
    }
    roundtrip(&c, b"still open").await;
    c.close().await.unwrap_or_else(|e| panic!("close: {e}"));
}

#[wasm_bindgen_test]
async fn unordered_unreliable_channel_has_the_mapped_options() {
    let mut props = TransportProperties::new();
    props.set("msgReliable", false).unwrap();
    props.set("msgOrdered", false).unwrap();
    let c = rendezvous(props).await;
    assert_eq!(c.get("webrtc.ordered").unwrap(), PropertyValue::Bool(false));
    assert_eq!(
        c.get("webrtc.maxRetransmits").unwrap(),
        PropertyValue::Integer(0)
    );
    assert_eq!(c.get("webrtc.maxPacketLifeTime").unwrap(), na());
    // Loopback loses nothing: it still echoes.
    roundtrip(&c, b"unordered, unreliable").await;
    // A Message cannot ask for more than the channel was created with.
    for prop in ["msgReliable", "msgOrdered"] {
        let ctx = postsocket::MessageContext::new().with(prop, true).unwrap();
        match c.send(b"x".to_vec(), Some(ctx), true).await {
            Err(SendFailure::SendError { error, .. }) => {
                assert_eq!(
                    error.reason,
                    ErrorReason::InvalidMessageProperties,
                    "{error}"
                )
            }
            other => panic!("{prop} true on an unreliable unordered channel: {other:?}"),
        }
    }

    let mut props = TransportProperties::new();
    props.set("msgReliable", false).unwrap();
    props
        .set("msgLifetime", Duration::from_millis(500))
        .unwrap();
    let c = rendezvous(props).await;
    assert_eq!(c.get("webrtc.ordered").unwrap(), PropertyValue::Bool(true));
    assert_eq!(
        c.get("webrtc.maxPacketLifeTime").unwrap(),
        PropertyValue::Integer(500)
    );
    assert_eq!(c.get("webrtc.maxRetransmits").unwrap(), na());
    roundtrip(&c, b"with a lifetime").await;
}

#[wasm_bindgen_test]
async fn clone_opens_a_second_channel_on_the_same_peer_connection() {
    let c = rendezvous(TransportProperties::new()).await;
    roundtrip(&c, b"first").await;
    let c2 = c
        .clone_in_group(None, None)
        .await
        .unwrap_or_else(|e| panic!("clone: {e}"));
    assert_eq!(c2.stack(), StackId::Webrtc);
    assert_eq!(c.grouped_connections().len(), 2);
    // Both channels echo, interleaved.
    roundtrip(&c2, b"second channel").await;
    roundtrip(&c, b"first again").await;
    c2.close()
        .await
        .unwrap_or_else(|e| panic!("close the clone: {e}"));
    roundtrip(&c, b"first after the clone closed").await;
    // CloseGroup closes the peer connection: the first channel ends too.
    c.close_group()
        .await
        .unwrap_or_else(|e| panic!("close group: {e}"));
}

#[wasm_bindgen_test]
async fn unreachable_signaling_fails_with_the_reason() {
    // The signaling server's port with a path it does not serve: HTTP 404.
    let url = signaling_url().replace("/offer", "/nothing-here");
    let pre = Preconnection::new(
        vec![],
        vec![],
        TransportProperties::new(),
        SecurityParameters::new(),
    );
    let e = pre
        .rendezvous(HttpSignaling::new(url))
        .await
        .expect_err("a 404 from the signaling server");
    assert_eq!(e.reason, ErrorReason::EstablishmentFailed);
    assert!(e.message.contains("404"), "{e}");
    // fetch verifies https with the page's trust: a pin (or a CA) for the
    // signaling server is refused, naming it, before anything is sent.
    let mut pinned = SecurityParameters::new();
    pinned.pinned_server_certificate = vec![[7u8; 32]];
    let e = pre
        .rendezvous(HttpSignaling::new(signaling_url()).with_security(pinned))
        .await
        .expect_err("a pin fetch cannot honour");
    assert_eq!(e.reason, ErrorReason::InvalidConfiguration, "{e}");
    assert!(e.message.contains("pinned_server_certificate"), "{e}");
}

#[path = "common/pipe.rs"]
mod pipe;

#[wasm_bindgen_test]
async fn browser_to_browser_in_one_page_answerer_and_listener() {
    let (a, b) = pipe::pair().await;
    a.connection.send_message("from the offerer").await.unwrap();
    let m = b.connection.receive().await.unwrap();
    assert_eq!(m.data(), b"from the offerer");
    b.connection
        .send_message("from the answerer")
        .await
        .unwrap();
    let m = a.connection.receive().await.unwrap();
    assert_eq!(m.data(), b"from the answerer");
    // The offerer's Clone is ConnectionReceived on the answerer's Listener.
    let (clone, received) =
        futures::join!(a.connection.clone_in_group(None, None), b.listener.accept());
    let clone = clone.unwrap_or_else(|e| panic!("clone: {e}"));
    let received = received.unwrap_or_else(|e| panic!("accept: {e}"));
    clone.send_message("on the clone").await.unwrap();
    let m = received.receive().await.unwrap();
    assert_eq!(m.data(), b"on the clone");
    assert_eq!(b.connection.grouped_connections().len(), 2);
}

/// Close and drop right after the last send resolved: what the sender's
/// browser still buffered (`bufferedAmount`) reaches the peer before its
/// RTCPeerConnection closes. Browser to browser in one page.
#[wasm_bindgen_test]
async fn close_then_drop_delivers_what_the_browser_still_buffered() {
    let (a, b) = pipe::pair().await;
    let (count, len) = (64usize, 64 * 1024);
    for i in 0..count {
        a.connection
            .send_message(vec![i as u8; len])
            .await
            .unwrap_or_else(|e| panic!("send {i}: {e:?}"));
    }
    a.connection.close().await.expect("close");
    drop(a);
    let (mut bytes, mut n) = (0, 0);
    while let Ok(m) = b.connection.receive().await {
        assert!(
            m.data().iter().all(|x| *x == n as u8),
            "Message {n} intact, in order"
        );
        bytes += m.data().len();
        n += 1;
    }
    assert_eq!(
        (bytes, n),
        (count * len, count),
        "every Message Sent arrived"
    );
}

/// Abort, browser to browser: the peer sees a failure, not a clean end
/// (RFC 9622 §10: Abort does not deliver what is left, and the peer must
/// not take it for a Close).
#[wasm_bindgen_test]
async fn an_abort_is_not_a_clean_finish_to_the_peer() {
    let (a, b) = pipe::pair().await;
    a.connection
        .send_message("before the abort")
        .await
        .expect("Sent");
    assert_eq!(
        b.connection.receive().await.expect("received").data(),
        b"before the abort"
    );
    a.connection.abort();
    match b.connection.receive().await {
        Err(e) => {
            console_log!("the peer saw the abort as: {}", e.error);
            assert_ne!(
                e.error.reason,
                postsocket::ErrorReason::PeerFinished,
                "the peer took the abort for a clean finish: {}",
                e.error
            )
        }
        Ok(m) => panic!("a Message after the abort: {:?}", m.data()),
    }
}
