//! The browser WebTransport stack, in headless Chromium (wasm-bindgen-test),
//! against native postsocket's own Listener in `ws-echo`.
//!
//! `scripts/test.sh` starts `native-examples/src/bin/ws-echo.rs` and passes,
//! at compile time, `POSTSOCKET_WT_PORT` (WebTransport on UDP and ws/wss on
//! TCP, one port number, echoing), `POSTSOCKET_WT_CERT_SHA256` (its
//! self-signed certificate's hash, for `serverCertificateHashes`) and
//! `POSTSOCKET_WT_BLACKHOLE_PORT` (ws/wss echo on TCP, a UDP socket that never
//! answers). By hand: run ws-echo, then export the lines it prints and run
//! `CHROMEDRIVER=/usr/bin/chromedriver WASM_BINDGEN_TEST_WEBDRIVER_JSON=$PWD/webdriver.json
//!  cargo test --target wasm32-unknown-unknown -p postsocket --test browser_webtransport`.
#![cfg(all(target_arch = "wasm32", target_os = "unknown"))]

mod browser_common;

use browser_common::pause;

use postsocket::framer::LengthPrefixFramer;
use postsocket::{
    Error, ErrorReason, MessageContext, Preconnection, ReceiveEvent, RemoteEndpoint,
    SecurityParameters, StackId, TraceEventKind as K, TransportContext, TransportProperties,
};
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

const T: Duration = Duration::from_secs(10);

fn var(value: Option<&'static str>, name: &str) -> &'static str {
    value.unwrap_or_else(|| panic!("{name} is not set: run scripts/test.sh (it starts ws-echo)"))
}

fn wt_port() -> u16 {
    var(option_env!("POSTSOCKET_WT_PORT"), "POSTSOCKET_WT_PORT")
        .parse()
        .expect("POSTSOCKET_WT_PORT")
}

fn blackhole_port() -> u16 {
    var(
        option_env!("POSTSOCKET_WT_BLACKHOLE_PORT"),
        "POSTSOCKET_WT_BLACKHOLE_PORT",
    )
    .parse()
    .expect("POSTSOCKET_WT_BLACKHOLE_PORT")
}

fn cert_hash() -> [u8; 32] {
    let hex = var(
        option_env!("POSTSOCKET_WT_CERT_SHA256"),
        "POSTSOCKET_WT_CERT_SHA256",
    );
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).expect("hex");
    }
    out
}

fn local(port: u16) -> RemoteEndpoint {
    RemoteEndpoint::new()
        .with_ip_address(IpAddr::V4(Ipv4Addr::LOCALHOST))
        .and_then(|r| r.with_port(port))
        .expect("endpoint")
}

/// Required security with the server certificate pinned (or a wrong pin).
fn pinned(hash: [u8; 32]) -> SecurityParameters {
    let mut s = SecurityParameters::new();
    s.pinned_server_certificate = vec![hash];
    s
}

/// A Preconnection that races as a fresh page would: its own empty
/// TransportContext, and no WebTransport budget (these tests run in one
/// page, one after another, and test the stacks; the context and the
/// budget have tests/browser_transport_context.rs).
fn pre(port: u16, sec: SecurityParameters) -> Preconnection {
    postsocket::set_webtransport_budget(usize::MAX);
    let mut p = Preconnection::new(
        Vec::new(),
        vec![local(port)],
        TransportProperties::new(),
        sec,
    );
    p.add_framer(LengthPrefixFramer::new());
    p.set_transport_context(TransportContext::new());
    p
}

/// Only the WebTransport stack (no WebSocket race beside it).
fn wt_only(port: u16, sec: SecurityParameters) -> Preconnection {
    let mut p = pre(port, sec);
    p.set_protocols(vec![StackId::Wt]);
    p
}

/// The browser's WebSocket alone (plaintext ws) to ws-echo's Listener on `port`.
fn ws_only(port: u16) -> Preconnection {
    let mut p = pre(port, SecurityParameters::opportunistic());
    p.set_protocols(vec![StackId::Ws]);
    p
}

fn unreliable() -> MessageContext {
    MessageContext::new()
        .with("msgReliable", false)
        .expect("msgReliable")
}

fn stacks_of(e: &Error) -> Vec<String> {
    e.candidates
        .iter()
        .filter_map(|c| c.stack.clone())
        .collect()
}

#[wasm_bindgen_test]
async fn wt_bidirectional_stream_echo() {
    let conn = wt_only(wt_port(), pinned(cert_hash()))
        .initiate_with_timeout(T)
        .await
        .unwrap_or_else(|e| panic!("initiate: {e}"));
    assert_eq!(conn.stack(), StackId::Wt);
    console_log!("{}", conn.trace().timeline());
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let messages = [b"hello webtransport".to_vec(), Vec::new(), big];
    for m in &messages {
        conn.send_message(m.clone())
            .await
            .unwrap_or_else(|e| panic!("send: {e:?}"));
    }
    for m in &messages {
        let r = conn
            .receive()
            .await
            .unwrap_or_else(|e| panic!("receive: {e:?}"));
        assert!(
            matches!(r, ReceiveEvent::Received { .. }),
            "a whole Message"
        );
        assert!(r.data() == &m[..], "echo of {} bytes differs", m.len());
    }
    // Clone: a new stream on the same session, echoing on its own.
    let clone = conn
        .clone_in_group(None, None)
        .await
        .unwrap_or_else(|e| panic!("clone: {e}"));
    assert_eq!(clone.stack(), StackId::Wt);
    assert_eq!(conn.grouped_connections().len(), 2);
    clone
        .send_message(b"on stream 2".to_vec())
        .await
        .expect("send");
    conn.send_message(b"on stream 1".to_vec())
        .await
        .expect("send");
    assert_eq!(
        clone.receive().await.expect("receive").data(),
        b"on stream 2"
    );
    assert_eq!(
        conn.receive().await.expect("receive").data(),
        b"on stream 1"
    );
    conn.close_group().await.expect("close group");
}

/// Send futures polled once and dropped midway: a browser write cannot be
/// taken back once started, so the one in progress is kept and finished by
/// the next flush, and each Message is echoed once, whole, in order.
#[wasm_bindgen_test]
async fn wt_send_futures_dropped_midway_send_each_message_once() {
    let conn = wt_only(wt_port(), pinned(cert_hash()))
        .initiate_with_timeout(T)
        .await
        .unwrap_or_else(|e| panic!("initiate: {e}"));
    let (n, len) = (24u8, 256 * 1024);
    let mut dropped_midway = 0;
    for i in 0..n {
        let mut fut = conn.send_message(vec![i; len]);
        // Polled, then again after the browser's Promises had a turn (so
        // that a write may have been handed to the browser), then dropped.
        let mut pending = futures::poll!(&mut fut).is_pending();
        if pending {
            let tick = js_sys::Promise::resolve(&wasm_bindgen::JsValue::NULL);
            let _ = wasm_bindgen_futures::JsFuture::from(tick).await;
            pending = futures::poll!(&mut fut).is_pending();
        }
        if pending {
            dropped_midway += 1;
        }
        drop(fut);
    }
    console_log!("{dropped_midway} of {n} send futures dropped midway");
    assert!(dropped_midway > 0, "some sends were still waiting");
    for i in 0..n {
        let r = conn
            .receive()
            .await
            .unwrap_or_else(|e| panic!("receive {i}: {e:?}"));
        assert!(
            r.data().len() == len && r.data().iter().all(|b| *b == i),
            "Message {i} echoed once, whole, in order (got {} bytes starting {:?})",
            r.data().len(),
            r.data().first()
        );
    }
    conn.close().await.expect("close");
}

/// Close right after a large Message was Sent, on the session's only
/// stream (so the session closes with it): the peer still gets all of it,
/// and the clean finish, not a reset (an Abort in its place fails this
/// test: the sink sees the stream reset). ws-echo's sink counts what
/// arrived; a second Connection asks it. (A page sees no acknowledgements;
/// what `close()` waits for is the browser's word that the data is
/// committed.) Found a Message lost whole when the session closed at once
/// on a busy machine.
#[wasm_bindgen_test]
async fn wt_close_right_after_a_large_message_loses_nothing() {
    end_right_after_a_large_message(wt_only(wt_port(), pinned(cert_hash())), true).await;
}

/// The same over the browser's WebSocket (plaintext ws to the same
/// Listener): its close frame goes after the data queued before it.
#[wasm_bindgen_test]
async fn ws_close_right_after_a_large_message_loses_nothing() {
    end_right_after_a_large_message(ws_only(wt_port()), true).await;
}

/// Abort, over either stack: the peer does not take it for a clean finish
/// (WebTransport resets the stream; a page cannot reset a WebSocket, so it
/// closes with code 4000).
#[wasm_bindgen_test]
async fn an_abort_is_not_a_clean_finish_to_the_peer() {
    for p in [wt_only(wt_port(), pinned(cert_hash())), ws_only(wt_port())] {
        let conn = p
            .initiate_with_timeout(T)
            .await
            .unwrap_or_else(|e| panic!("initiate: {e}"));
        let stack = conn.stack();
        let id = format!("abort-{}", js_sys::Math::random());
        conn.send_message([&b"\xffsink:"[..], id.as_bytes()].concat())
            .await
            .expect("the sink request is Sent");
        conn.send_message(b"one".to_vec()).await.expect("Sent");
        // The sink has it (an abort may discard what is unread) before the abort.
        let before = sink_answer_until(&p, &id, |a| a.starts_with("messages=1")).await;
        assert_eq!(before, "messages=1 bytes=3 end=open", "{stack}");
        conn.abort();
        drop(conn);
        let answer = sink_answer(&p, &id).await;
        assert!(
            answer.starts_with("messages=1 bytes=3 end=") && !answer.ends_with("end=finished"),
            "{stack}: the peer saw {answer}"
        );
        console_log!("{stack} abort, as the peer saw it: {answer}");
    }
}

/// What ws-echo's sink `id` got, asked over a new Connection of `p`, once
/// it has ended (asked again for at most 10 s).
async fn sink_answer(p: &Preconnection, id: &str) -> String {
    sink_answer_until(p, id, |a| !a.ends_with("end=open") && a != "unknown").await
}

/// The sink's answer once `done` says so (asked again for at most 10 s).
async fn sink_answer_until(p: &Preconnection, id: &str, done: impl Fn(&str) -> bool) -> String {
    let ask = p
        .initiate_with_timeout(T)
        .await
        .unwrap_or_else(|e| panic!("initiate: {e}"));
    let mut answer = String::new();
    for _ in 0..100 {
        ask.send_message([&b"\xffcount:"[..], id.as_bytes()].concat())
            .await
            .expect("send");
        let r = ask.receive().await.expect("the count");
        answer = String::from_utf8_lossy(r.data()).into_owned();
        if done(&answer) {
            break;
        }
        pause(100).await;
    }
    ask.close().await.expect("close");
    answer
}

/// Dropped (no close) right after a large Message was Sent: dropping the
/// last handle closes the Connection, and a Message reported Sent still
/// reaches the peer, whole, with a clean finish.
#[wasm_bindgen_test]
async fn wt_drop_right_after_a_large_message_loses_nothing() {
    end_right_after_a_large_message(wt_only(wt_port(), pinned(cert_hash())), false).await;
}

/// The same over the browser's WebSocket.
#[wasm_bindgen_test]
async fn ws_drop_right_after_a_large_message_loses_nothing() {
    end_right_after_a_large_message(ws_only(wt_port()), false).await;
}

/// A large Message marked final (it finishes the stream), then `close()`
/// and drop at once: the close still waits for the data to be committed.
#[wasm_bindgen_test]
async fn wt_final_message_then_close_loses_nothing() {
    let p = wt_only(wt_port(), pinned(cert_hash()));
    let id = format!("final-{}", js_sys::Math::random());
    let conn = p
        .initiate_with_timeout(T)
        .await
        .unwrap_or_else(|e| panic!("initiate: {e}"));
    conn.send_message([&b"\xffsink:"[..], id.as_bytes()].concat())
        .await
        .expect("the sink request is Sent");
    let len = 4 << 20;
    let last = MessageContext::new().with("final", true).expect("final");
    conn.send(vec![7u8; len], Some(last), true)
        .await
        .expect("the final Message is Sent");
    conn.close().await.expect("close");
    drop(conn);
    assert_eq!(
        sink_answer(&p, &id).await,
        format!("messages=1 bytes={len} end=finished")
    );
}

/// Send a large Message to ws-echo's sink, then at once close the
/// Connection (`close`) or drop it: the sink must have got it all, and a
/// clean finish.
async fn end_right_after_a_large_message(p: Preconnection, close: bool) {
    let id = format!("end-{}", js_sys::Math::random());
    let conn = p
        .initiate_with_timeout(T)
        .await
        .unwrap_or_else(|e| panic!("initiate: {e}"));
    let stack = conn.stack();
    conn.send_message([&b"\xffsink:"[..], id.as_bytes()].concat())
        .await
        .expect("the sink request is Sent");
    let len = 4 << 20;
    conn.send_message(vec![7u8; len])
        .await
        .expect("the large Message is Sent");
    if close {
        conn.close().await.expect("close");
    }
    drop(conn);
    let answer = sink_answer(&p, &id).await;
    let how = if close { "closed" } else { "dropped" };
    assert_eq!(
        answer,
        format!("messages=1 bytes={len} end=finished"),
        "what the peer got of a {stack} Connection {how} right after Sent"
    );
}

#[wasm_bindgen_test]
async fn wt_datagram_echo() {
    let conn = wt_only(wt_port(), pinned(cert_hash()))
        .initiate_with_timeout(T)
        .await
        .unwrap_or_else(|e| panic!("initiate: {e}"));
    assert_eq!(conn.stack(), StackId::Wt);
    // The server learns of the session's stream from its first bytes.
    conn.send_message(b"open".to_vec()).await.expect("send");
    assert_eq!(conn.receive().await.expect("receive").data(), b"open");
    // Loopback does not lose datagrams; each comes back whole, unframed.
    for m in [&b"datagram one"[..], b"two", &[7u8; 1000][..]] {
        conn.send(m.to_vec(), Some(unreliable()), true)
            .await
            .unwrap_or_else(|e| panic!("send datagram: {e:?}"));
        let r = conn
            .receive()
            .await
            .unwrap_or_else(|e| panic!("receive datagram: {e:?}"));
        assert_eq!(r.data(), m);
        assert_eq!(r.context().properties.msg_reliable, Some(false));
    }
    conn.close().await.expect("close");
}

#[wasm_bindgen_test]
async fn blackholed_wt_loses_the_race_to_websocket() {
    // Opportunistic security: wt, wss and ws are all candidates for one
    // RemoteEndpoint. UDP is blackholed, wss fails (the browser does not
    // trust the self-signed certificate), ws wins about one attempt delay in.
    let conn = pre(blackhole_port(), SecurityParameters::opportunistic())
        .initiate_with_timeout(T)
        .await
        .unwrap_or_else(|e| panic!("initiate: {e}"));
    let t = conn.trace();
    let tl = t.timeline();
    console_log!("{tl}");
    assert_eq!(conn.stack(), StackId::Ws, "{tl}");
    assert_eq!(
        t.candidate("1.1").unwrap().stack.as_deref(),
        Some("wt"),
        "{tl}"
    );
    let wt_start = t.find(K::AttemptStarted, "1.1.1").expect("wt started").t_ms;
    let winner = t.winner().expect("a winner").to_string();
    let ws_start = t.find(K::AttemptStarted, &winner).expect("ws started").t_ms;
    assert!(wt_start < 100.0, "{tl}");
    assert!(
        (200.0..2000.0).contains(&ws_start),
        "the WebSocket candidate starts after one attempt delay:\n{tl}"
    );
    assert!(
        t.find(K::AttemptCancelled, "1.1.1").is_some(),
        "the WebTransport attempt was still pending and is cancelled:\n{tl}"
    );
    conn.send_message(b"raced".to_vec()).await.expect("send");
    assert_eq!(conn.receive().await.expect("receive").data(), b"raced");
    conn.close().await.expect("close");
}

#[wasm_bindgen_test]
async fn wrong_certificate_hash_fails_the_wt_candidate_for_security() {
    let mut wrong = cert_hash();
    wrong[0] ^= 0xff;
    let mut p = pre(wt_port(), pinned(wrong));
    p.set_protocols(vec![StackId::Wt]);
    let e = match p.initiate_with_timeout(T).await {
        Ok(c) => panic!("connected over {} with a wrong certificate hash", c.stack()),
        Err(e) => e,
    };
    console_log!("wrong hash: {e}");
    assert_eq!(e.reason, ErrorReason::EstablishmentFailed, "{e}");
    assert_eq!(stacks_of(&e), vec!["wt".to_string()], "{e}");
    let m = &e.candidates[0].message;
    assert!(m.contains("serverCertificateHashes"), "{m}");
}

#[wasm_bindgen_test]
async fn a_failing_wt_never_lets_plaintext_ws_win_unless_opportunistic() {
    // Required security (the default) with a wrong pin: wt fails its
    // certificate check, wss fails (untrusted), and ws is no candidate at
    // all, although the server speaks it on the same port.
    let mut wrong = cert_hash();
    wrong[0] ^= 0xff;
    let e = match pre(wt_port(), pinned(wrong)).initiate_with_timeout(T).await {
        Ok(c) => panic!("connected over {} with required security", c.stack()),
        Err(e) => e,
    };
    console_log!("required security: {e}");
    let stacks = stacks_of(&e);
    assert!(stacks.contains(&"wt".to_string()), "{e}");
    assert!(!stacks.contains(&"ws".to_string()), "{e}");
    assert!(!e.to_string().contains("ws://"), "{e}");
    // A page cannot check a WebSocket's certificate against a pin, so wss
    // refuses to run rather than accept any certificate the browser trusts.
    let wss = e
        .candidates
        .iter()
        .find(|c| c.stack.as_deref() == Some("wss"))
        .unwrap_or_else(|| panic!("wss was no candidate: {e}"));
    assert!(
        wss.message.contains("pinnedServerCertificate"),
        "{}",
        wss.message
    );

    // The application chose opportunistic security: now ws may win.
    let mut sec = SecurityParameters::opportunistic();
    sec.pinned_server_certificate = vec![wrong];
    let conn = pre(wt_port(), sec)
        .initiate_with_timeout(T)
        .await
        .unwrap_or_else(|e| panic!("opportunistic: {e}"));
    console_log!("{}", conn.trace().timeline());
    assert_eq!(conn.stack(), StackId::Ws);
    conn.send_message(b"plaintext".to_vec())
        .await
        .expect("send");
    assert_eq!(conn.receive().await.expect("receive").data(), b"plaintext");
    conn.close().await.expect("close");
}

/// One Preconnection (Messages asked for, with the length-prefix framer
/// ws-echo's Listener uses; opportunistic security with the certificate
/// pinned) raced against the server twice:
/// once WebTransport wins, once (its UDP blackholed on the server)
/// WebSocket does. The same Messages come back either way: sizes, order,
/// boundaries, bytes.
#[wasm_bindgen_test]
async fn the_same_messages_come_back_whichever_stack_wins() {
    let messages: Vec<Vec<u8>> = [0usize, 1, 5_000, 300_000, 3]
        .iter()
        .enumerate()
        .map(|(i, len)| (0..*len).map(|j| (i * 31 + j % 251) as u8).collect())
        .collect();
    for (port, winner) in [(wt_port(), StackId::Wt), (blackhole_port(), StackId::Ws)] {
        let mut props = TransportProperties::new();
        props.set_preference(
            postsocket::SelectionProperty::PreserveMsgBoundaries,
            postsocket::Preference::Require,
        );
        let mut sec = SecurityParameters::opportunistic();
        sec.pinned_server_certificate = vec![cert_hash()];
        let mut pre = Preconnection::new(Vec::new(), vec![local(port)], props, sec);
        pre.add_framer(LengthPrefixFramer::new());
        let conn = pre
            .initiate_with_timeout(T)
            .await
            .unwrap_or_else(|e| panic!("initiate: {e}"));
        assert_eq!(conn.stack(), winner, "{}", conn.trace().timeline());
        for m in &messages {
            conn.send_message(m.clone())
                .await
                .unwrap_or_else(|e| panic!("send over {winner}: {e:?}"));
        }
        for (i, m) in messages.iter().enumerate() {
            let r = conn
                .receive()
                .await
                .unwrap_or_else(|e| panic!("receive {i} over {winner}: {e:?}"));
            assert!(
                matches!(r, ReceiveEvent::Received { .. }),
                "Message {i} over {winner}: one whole Message"
            );
            assert!(
                r.data() == &m[..],
                "Message {i} over {winner}: {} bytes back for {}",
                r.data().len(),
                m.len()
            );
        }
        conn.close().await.expect("close");
    }
}
