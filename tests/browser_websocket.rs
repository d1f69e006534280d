//! The browser WebSocket stack, in headless Chromium (wasm-bindgen-test).
//!
//! Needs the native echo helper (`native-examples/src/bin/ws-echo.rs`) on
//! 127.0.0.1; `scripts/test.sh` starts it and passes, at compile time, its
//! echo port, a port with no listener and a port that accepts TCP but never
//! answers: `POSTSOCKET_WS_ECHO_PORT`, `POSTSOCKET_WS_REFUSED_PORT`,
//! `POSTSOCKET_WS_SILENT_PORT`. By hand:
//! `cargo run -p postsocket-examples --bin ws-echo -- 0` in one shell, then
//! the three variables it prints and `CHROMEDRIVER=/usr/bin/chromedriver
//!  WASM_BINDGEN_TEST_WEBDRIVER_JSON=$PWD/webdriver.json
//!  cargo test --target wasm32-unknown-unknown -p postsocket --test browser_websocket`.
#![cfg(all(target_arch = "wasm32", target_os = "unknown"))]

mod browser_common;

use browser_common::pause;

use postsocket::{
    ErrorReason, Preconnection, RemoteEndpoint, SecurityParameters, StackId, TraceEventKind,
    TransportProperties,
};
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

fn port(value: Option<&'static str>, name: &str) -> u16 {
    value
        .unwrap_or_else(|| panic!("{name} is not set: run scripts/test.sh (it starts ws-echo)"))
        .parse()
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn echo_port() -> u16 {
    port(
        option_env!("POSTSOCKET_WS_ECHO_PORT"),
        "POSTSOCKET_WS_ECHO_PORT",
    )
}

fn refused_port() -> u16 {
    port(
        option_env!("POSTSOCKET_WS_REFUSED_PORT"),
        "POSTSOCKET_WS_REFUSED_PORT",
    )
}

fn local(port: u16) -> RemoteEndpoint {
    RemoteEndpoint::new()
        .with_ip_address(IpAddr::V4(Ipv4Addr::LOCALHOST))
        .and_then(|r| r.with_port(port))
        .expect("endpoint")
}

/// A plaintext Preconnection that races as a fresh page would (its own
/// empty TransportContext: these tests share one page, and test racing and
/// the stack, not what earlier tests taught the page).
fn plaintext(remotes: Vec<RemoteEndpoint>) -> Preconnection {
    let mut p = Preconnection::new(
        Vec::new(),
        remotes,
        TransportProperties::new(),
        SecurityParameters::disabled(),
    );
    p.set_transport_context(postsocket::TransportContext::new());
    p
}

/// `pre` initiated, within 10 s.
async fn open(pre: &Preconnection) -> postsocket::Connection {
    pre.initiate_with_timeout(Duration::from_secs(10))
        .await
        .unwrap_or_else(|e| panic!("initiate: {e}"))
}

#[wasm_bindgen_test]
async fn ws_echo_keeps_message_boundaries() {
    let pre = plaintext(vec![local(echo_port())]);
    let conn = open(&pre).await;
    assert_eq!(conn.stack(), StackId::Ws);
    let pattern =
        |n: u32, seed: u32| -> Vec<u8> { (0..n).map(|i| ((i + seed) % 251) as u8).collect() };
    // Up to 64 KiB a message goes through the handler's staging area; one
    // byte more, and 100 000, are copied in directly.
    let messages = [
        b"hello browser".to_vec(),
        Vec::new(),
        pattern(65_535, 1),
        pattern(65_536, 2),
        pattern(65_537, 3),
        pattern(100_000, 0),
        b"small again".to_vec(),
    ];
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
            matches!(r, postsocket::ReceiveEvent::Received { .. }),
            "a whole Message"
        );
        assert_eq!(r.data().len(), m.len());
        assert_eq!(r.data(), &m[..]);
    }
    conn.close().await.expect("close");
}

/// Open `pre`, send `message`, and return the Connection and the echo's data.
async fn echo_once(
    pre: Preconnection,
    message: &[u8],
) -> (postsocket::Connection, postsocket::Bytes) {
    let conn = open(&pre).await;
    conn.send_message(message.to_vec())
        .await
        .unwrap_or_else(|e| panic!("send: {e:?}"));
    let data = conn
        .receive()
        .await
        .unwrap_or_else(|e| panic!("receive: {e:?}"))
        .into_data();
    assert_eq!(&data[..], message);
    (conn, data)
}

#[wasm_bindgen_test]
async fn received_data_hands_over_the_browsers_own_buffer_once() {
    use postsocket::__web_bindings::{keep_browser_bytes, take_browser_bytes};
    // Off (the default): nothing is kept.
    keep_browser_bytes(false);
    let (conn, data) = echo_once(plaintext(vec![local(echo_port())]), b"not kept").await;
    assert!(take_browser_bytes(&data).is_none(), "kept while off");
    conn.close().await.expect("close");

    keep_browser_bytes(true);
    let (conn, data) = echo_once(
        plaintext(vec![local(echo_port())]),
        b"as the browser got it",
    )
    .await;
    for part in [data.slice(1..), data.slice(..data.len() - 1)] {
        assert!(
            take_browser_bytes(&part).is_none(),
            "a part of the data is not the browser's buffer"
        );
    }
    let js = take_browser_bytes(&data).expect("the browser's buffer of a received message");
    assert_eq!(js.to_vec(), &data[..], "the same bytes");
    assert!(take_browser_bytes(&data).is_none(), "handed out once only");

    // Several kept at once, taken out of order; one dropped untaken, and
    // the next messages (likely at a freed one's address, same length)
    // hand over their own buffers, not a stale one.
    let message = |i: u8| vec![b'a' + i; 24];
    let mut got = Vec::new();
    for i in 0..4 {
        conn.send_message(message(i)).await.expect("send");
    }
    for _ in 0..4 {
        got.push(conn.receive().await.expect("receive").into_data());
    }
    for i in [3, 0, 2] {
        let js = take_browser_bytes(&got[i]).expect("a kept buffer");
        assert_eq!(js.to_vec(), message(i as u8), "message {i}");
    }
    drop(got);
    let mut reused = 0;
    for round in 0..3u8 {
        let (untaken, next) = (message(10 + round), message(20 + round));
        conn.send_message(untaken.clone()).await.expect("send");
        let first = conn.receive().await.expect("receive").into_data();
        assert_eq!(&first[..], &untaken[..]);
        let freed = first.as_ptr();
        drop(first); // never taken: its buffer is forgotten
        conn.send_message(next.clone()).await.expect("send");
        let data = conn.receive().await.expect("receive").into_data();
        reused += usize::from(data.as_ptr() == freed);
        let js = take_browser_bytes(&data).expect("the new message's buffer");
        assert_eq!(
            js.to_vec(),
            next,
            "round {round}: the buffer of the message received"
        );
    }
    assert!(
        reused > 0,
        "no round reused a freed address: the stale case went untested"
    );
    conn.close().await.expect("close");

    // With a framer the Message is cut out of the WebSocket message: the
    // browser holds no buffer of exactly its bytes.
    let mut pre = plaintext(vec![local(echo_port())]);
    pre.add_framer(postsocket::framer::LengthPrefixFramer::new());
    let (conn, data) = echo_once(pre, b"framed").await;
    assert!(take_browser_bytes(&data).is_none());
    conn.close().await.expect("close");
}

#[wasm_bindgen_test]
async fn sends_wait_for_the_browser_buffer_and_keep_order() {
    // 40 × 100 KB sent without reading: bufferedAmount passes the 1 MiB
    // high-water mark, so sends wait for it to drain; all come back in order.
    let pre = plaintext(vec![local(echo_port())]);
    let conn = open(&pre).await;
    let message = |i: u32| -> Vec<u8> { (0..100_000u32).map(|j| ((i + j) % 256) as u8).collect() };
    let sends: Vec<_> = (0..40).map(|i| conn.send_message(message(i))).collect();
    for s in futures::future::join_all(sends).await {
        s.unwrap_or_else(|e| panic!("send: {e:?}"));
    }
    for i in 0..40 {
        let r = conn
            .receive()
            .await
            .unwrap_or_else(|e| panic!("receive {i}: {e:?}"));
        assert!(r.data() == &message(i)[..], "message {i} differs");
    }
    conn.close().await.expect("close");
}

#[wasm_bindgen_test]
async fn a_close_by_the_server_says_code_and_reason() {
    let pre = plaintext(vec![local(echo_port())]);
    let conn = open(&pre).await;
    conn.send_message(b"\xffclose:bye from ws-echo".to_vec())
        .await
        .expect("send");
    let e = match conn.receive().await {
        Ok(r) => panic!("received {:?} instead of the close", r.data()),
        Err(e) => e,
    };
    let text = format!("{e:?}");
    console_log!("server close: {text}");
    assert!(text.contains("code 4001"), "{text}");
    assert!(text.contains("bye from ws-echo"), "{text}");
}

#[wasm_bindgen_test]
async fn messages_arrive_intact_after_wasm_memory_grows() {
    // The handler copies a small message into wasm memory through a view
    // it keeps; memory that grew detaches that view, and the handler must
    // make a new one (else the message is lost and this receive times out).
    let pre = plaintext(vec![local(echo_port())]);
    let conn = open(&pre).await;
    let mut ballast = Vec::new();
    for round in 0..3u32 {
        // Until the memory grows (memory an earlier test freed is used
        // first), at most 1 GiB.
        let pages = core::arch::wasm32::memory_size(0);
        for _ in 0..64 {
            ballast.push(vec![round as u8; 16 << 20]);
            if core::arch::wasm32::memory_size(0) > pages {
                break;
            }
        }
        assert!(
            core::arch::wasm32::memory_size(0) > pages,
            "the memory grew"
        );
        for len in [1000, 70_000] {
            let message: Vec<u8> = (0..len).map(|i| (i as u32 + round) as u8).collect();
            conn.send_message(message.clone()).await.expect("send");
            let echo = futures::future::select(Box::pin(conn.receive()), Box::pin(pause(5000)));
            let data = match echo.await {
                futures::future::Either::Left((r, _)) => r.expect("receive").into_data(),
                futures::future::Either::Right(_) => {
                    panic!("round {round}: no echo of {len} bytes within 5 s")
                }
            };
            assert!(data[..] == message[..], "round {round}: {len} bytes differ");
        }
    }
    drop(ballast);
    conn.close().await.expect("close");
}

#[wasm_bindgen_test]
async fn a_send_after_the_server_closed_fails_instead_of_vanishing() {
    // The server's close frame arrives while nobody reads: the browser's
    // WebSocket is closing or closed, where its send() would drop the data
    // without an error. postsocket's send must say so instead.
    let pre = plaintext(vec![local(echo_port())]);
    let conn = open(&pre).await;
    conn.send_message(b"\xffclose:going".to_vec())
        .await
        .expect("send");
    pause(500).await;
    let e = match conn.send_message(b"too late".to_vec()).await {
        Ok(sent) => panic!("a send on a closed WebSocket succeeded: {sent:?}"),
        Err(e) => e,
    };
    let text = format!("{e:?}");
    assert!(text.contains("closing or closed"), "{text}");
}

#[wasm_bindgen_test]
async fn refused_candidate_fails_and_the_next_one_wins() {
    let (refused, echo) = (refused_port(), echo_port());
    let mut pre = plaintext(vec![local(refused), local(echo)]);
    pre.set_connection_attempt_delay(Duration::from_millis(100));
    let conn = open(&pre).await;
    let trace = conn.trace();
    let addr = |id: &str| {
        trace
            .candidate(id)
            .and_then(|c| c.address.clone())
            .unwrap_or_default()
    };
    let failed: Vec<String> = trace
        .of_kind(TraceEventKind::AttemptFailed)
        .map(|e| addr(&e.id))
        .collect();
    let winner = trace.winner().expect("a winner");
    assert_eq!(
        addr(winner),
        format!("127.0.0.1:{echo}"),
        "{}",
        trace.timeline()
    );
    assert_eq!(
        failed,
        vec![format!("127.0.0.1:{refused}")],
        "{}",
        trace.timeline()
    );
    let started = trace.of_kind(TraceEventKind::AttemptStarted).count();
    assert_eq!(started, 2, "{}", trace.timeline());
    let reason = trace
        .of_kind(TraceEventKind::AttemptFailed)
        .next()
        .and_then(|e| e.reason.clone())
        .unwrap_or_default();
    assert!(
        reason.contains("could not open ws://127.0.0.1:"),
        "{reason}"
    );
    console_log!("{}", trace.timeline());
    conn.send_message(b"raced".to_vec()).await.expect("send");
    assert_eq!(conn.receive().await.expect("receive").data(), b"raced");
    conn.close().await.expect("close");
}

#[wasm_bindgen_test]
async fn secure_default_never_falls_back_to_plaintext_ws() {
    // Default SecurityParameters require security: only wss is raced, and a
    // plaintext server cannot complete its TLS handshake.
    let pre = Preconnection::new(
        Vec::new(),
        vec![local(echo_port())],
        TransportProperties::new(),
        SecurityParameters::new(),
    );
    let e = match pre.initiate_with_timeout(Duration::from_secs(10)).await {
        Ok(c) => panic!("connected over {} to a plaintext server", c.stack()),
        Err(e) => e,
    };
    let text = e.to_string();
    console_log!("secure default, plaintext server: {text}");
    assert_eq!(e.reason, ErrorReason::EstablishmentFailed, "{text}");
    assert!(text.contains("wss://127.0.0.1:"), "{text}");
    assert!(!text.contains("ws://127.0.0.1:"), "{text}");

    // Asking for ws with security required: no candidate, and the error says why.
    let mut pre = Preconnection::new(
        Vec::new(),
        vec![local(echo_port())],
        TransportProperties::new(),
        SecurityParameters::new(),
    );
    pre.set_protocols(vec![StackId::Ws]);
    let e = match pre.initiate_with_timeout(Duration::from_secs(10)).await {
        Ok(c) => panic!("connected over {} without security", c.stack()),
        Err(e) => e,
    };
    console_log!("ws required with secure default: {e}");
    assert_eq!(e.reason, ErrorReason::NoCandidates, "{e}");
    assert!(e.to_string().contains("no security"), "{e}");
}

#[wasm_bindgen_test]
async fn host_name_goes_to_the_browser_as_it_is() {
    // No DNS API in a page: the engine races the name as one leaf per stack
    // and the browser resolves `localhost` itself.
    let remote = RemoteEndpoint::new()
        .with_host_name("localhost")
        .and_then(|r| r.with_port(echo_port()))
        .expect("endpoint");
    let pre = plaintext(vec![remote]);
    let conn = pre
        .initiate_with_timeout(Duration::from_secs(10))
        .await
        .unwrap_or_else(|e| panic!("initiate localhost: {e}"));
    console_log!("localhost:\n{}", conn.trace().timeline());
    assert_eq!(conn.stack(), StackId::Ws);
    assert_eq!(conn.remote_endpoint().host_name(), Some("localhost"));
    let won = conn
        .trace()
        .of_kind(TraceEventKind::Won)
        .next()
        .expect("a won event")
        .id
        .clone();
    let leaf = conn
        .trace()
        .candidate(&won)
        .expect("the winner's candidate");
    assert_eq!(leaf.host.as_deref(), Some("localhost"));
    assert_eq!(
        leaf.address.as_deref(),
        Some(format!("localhost:{}", echo_port()).as_str())
    );
    conn.send_message(b"by name".to_vec()).await.expect("send");
    let r = conn.receive().await.expect("receive");
    assert_eq!(r.data(), b"by name");
    conn.close().await.expect("close");

    // Resolve() needs addresses, which a page cannot get.
    let remote = RemoteEndpoint::new()
        .with_host_name("localhost")
        .and_then(|r| r.with_port(echo_port()))
        .expect("endpoint");
    let e = plaintext(vec![remote]).resolve().await.unwrap_err();
    assert_eq!(e.reason, ErrorReason::ResolutionFailed, "{e}");
    assert!(e.to_string().contains("no DNS API"), "{e}");
}

#[wasm_bindgen_test]
async fn establishment_timeout_runs_on_browser_timers() {
    // A server that accepts TCP and never answers the WebSocket handshake:
    // only the runtime's setTimeout / performance.now() can end this.
    let silent = port(
        option_env!("POSTSOCKET_WS_SILENT_PORT"),
        "POSTSOCKET_WS_SILENT_PORT",
    );
    let pre = plaintext(vec![local(silent)]);
    let t0 = js_sys::Date::now();
    let e = match pre.initiate_with_timeout(Duration::from_millis(300)).await {
        Ok(c) => panic!("connected over {}", c.stack()),
        Err(e) => e,
    };
    let ms = js_sys::Date::now() - t0;
    console_log!("timeout after {ms} ms: {e}");
    assert_eq!(e.reason, ErrorReason::Timeout, "{e}");
    assert!(
        (290.0..3000.0).contains(&ms),
        "timed out after {ms} ms: {e}"
    );
}

/// SecurityParameters a page cannot honour are refused by name before any
/// connection is tried, not dropped: the browser verifies servers, picks
/// client certificates and negotiates ALPN and TLS versions itself.
#[wasm_bindgen_test]
async fn security_parameters_a_page_cannot_honour_are_refused_by_name() {
    let mut sec = SecurityParameters::new();
    sec.alpn = vec!["h2".into()];
    sec.trusted_ca = vec!["-----BEGIN CERTIFICATE-----".into()];
    sec.server_name = Some("example.test".into());
    let e = Preconnection::new(
        Vec::new(),
        vec![local(echo_port())],
        TransportProperties::new(),
        sec,
    )
    .initiate()
    .await
    .expect_err("refused");
    assert_eq!(e.reason, ErrorReason::InvalidConfiguration, "{e}");
    for name in ["alpn", "trusted_ca", "server_name"] {
        assert!(e.message.contains(name), "{name} named: {e}");
    }
    assert!(e.candidates.is_empty(), "nothing was tried: {e}");
}

/// Initiate and Close leave no callbacks behind: each race drops its timer,
/// and a Close may drop waits, before they fire. A timer awaited through a
/// Promise kept its two callbacks (and their JS functions) for good when
/// dropped unfired: 50 connects and closes left at least 100 more live JS
/// references; now none to speak of.
#[wasm_bindgen_test]
async fn initiate_and_close_leave_no_callbacks_behind() {
    let pre = plaintext(vec![local(echo_port())]);
    // Warm-up: what is made once (the context, the executor) is made now.
    open(&pre).await.close().await.expect("close");
    let before = wasm_bindgen::externref_heap_live_count();
    for _ in 0..50 {
        let conn = open(&pre).await;
        conn.close().await.expect("close");
    }
    let after = wasm_bindgen::externref_heap_live_count();
    assert!(
        after <= before + 10,
        "{} JS references more after 50 connects and closes ({before} -> {after})",
        after.saturating_sub(before)
    );
}

/// A page cannot push back on a WebSocket's peer: Messages that no receive
/// takes wait, up to 64 MiB. Past it the socket is closed (1009) and the
/// Connection fails, saying why; the Messages queued before it are still
/// delivered, in order. Before, they queued without bound (until the
/// page's memory ran out, which ends every Connection of the page).
#[wasm_bindgen_test]
async fn unread_messages_past_the_bound_fail_the_connection_and_say_so() {
    let pre = plaintext(vec![local(echo_port())]);
    let conn = open(&pre).await;
    let mib = 1 << 20;
    let mut sent = 0;
    for i in 0..96u32 {
        if conn.send_message(vec![i as u8; mib]).await.is_err() {
            break; // closed at the bound
        }
        sent += 1;
    }
    assert!(sent > 64, "sent {sent} MiB");
    let mut got = 0usize;
    let error = loop {
        // Within 5 s each: with no bound, all 96 come and then nothing.
        let next = futures::future::select(Box::pin(conn.receive()), Box::pin(pause(5000))).await;
        let futures::future::Either::Left((next, _)) = next else {
            panic!("no error after {got} MiB: nothing bounded the unread Messages");
        };
        match next {
            Ok(m) => {
                assert_eq!(m.data().len(), mib);
                assert!(m.data().iter().all(|b| *b == got as u8), "in order");
                got += 1;
            }
            Err(e) => break e.error.to_string(),
        }
    };
    assert!(
        (32..=64).contains(&got),
        "{got} MiB delivered before the error"
    );
    assert!(
        error.contains("did not read") && error.contains("64 MiB"),
        "{error}"
    );
}
