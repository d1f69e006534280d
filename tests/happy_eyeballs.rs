//! Happy Eyeballs over real loopback sockets: a blackholed IPv6 address
//! raced against a serving IPv4 one, a refused IPv6 address, total failure.
// Native only (sockets, tokio, proptest): the browser tests are tests/browser_*.rs.
#![cfg(not(all(target_arch = "wasm32", target_os = "unknown")))]

mod common;
use common::*;
use postsocket::{ErrorReason, TraceEventKind as K};
use std::time::Duration;

#[tokio::test]
async fn blackholed_v6_loses_to_v4_after_one_attempt_delay() {
    let (bh, v4) = blackhole_v6_serving_v4().await;
    let mut pre = tcp_lines(vec![remote(bh.addr), remote(v4)]);
    pre.set_connection_attempt_delay(Duration::from_millis(100));
    let conn = pre.initiate().await.expect("IPv4 wins");
    assert_eq!(conn.remote_addr(), Some(v4));
    let trace = conn.trace().clone();
    // IPv6 first, IPv4 one attempt delay later, IPv6 cancelled when IPv4 wins.
    assert_eq!(
        trace.candidate("1.1.1").unwrap().address.as_deref(),
        Some(bh.addr.to_string().as_str())
    );
    assert_eq!(
        trace.candidate("1.1.2").unwrap().address.as_deref(),
        Some(v4.to_string().as_str())
    );
    let v6_start = t_of(&trace, K::AttemptStarted, "1.1.1");
    let v4_start = t_of(&trace, K::AttemptStarted, "1.1.2");
    assert!(v6_start < 50.0, "v6 starts at once:\n{}", trace.timeline());
    assert!(
        v4_start >= 100.0,
        "v4 waits one attempt delay:\n{}",
        trace.timeline()
    );
    assert!(
        v4_start < 1000.0,
        "v4 starts about one attempt delay later:\n{}",
        trace.timeline()
    );
    assert!(
        trace.find(K::AttemptCancelled, "1.1.1").is_some(),
        "{}",
        trace.timeline()
    );
    assert_eq!(trace.winner(), Some("1.1.2"));
    // And the Connection works.
    conn.send_message("ping").await.unwrap();
    assert_eq!(conn.receive().await.unwrap().data(), b"ping");
    conn.close().await.unwrap();
}

#[tokio::test]
async fn refused_v6_starts_v4_at_once() {
    let v4 = tcp_echo_server("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let refused = refused_port("::1");
    let mut pre = tcp_lines(vec![remote(refused), remote(v4)]);
    pre.set_connection_attempt_delay(Duration::from_millis(2000));
    let conn = pre.initiate().await.expect("IPv4 wins");
    let trace = conn.trace();
    assert!(
        trace.find(K::AttemptFailed, "1.1.1").is_some(),
        "{}",
        trace.timeline()
    );
    let v4_start = t_of(trace, K::AttemptStarted, "1.1.2");
    assert!(
        v4_start < 1000.0,
        "v4 must not wait the 2 s attempt delay:\n{}",
        trace.timeline()
    );
    conn.close().await.unwrap();
}

/// An attempt that ends as it starts (here: no local endpoint of its
/// family) is reported then, and the next starts at once, not one attempt
/// delay later; with no other candidate, Initiate fails at once with that
/// reason rather than at the timeout.
#[tokio::test]
async fn an_attempt_that_ends_as_it_starts_is_reported_at_once() {
    let v4 = tcp_echo_server("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let local = || {
        vec![postsocket::LocalEndpoint::new()
            .with_ip_address("127.0.0.1".parse().unwrap())
            .unwrap()]
    };
    let lines = |remotes| {
        postsocket::Preconnection::new(
            local(),
            remotes,
            postsocket::TransportProperties::new(),
            postsocket::SecurityParameters::disabled(),
        )
        .with_framer(postsocket::framer::DelimiterFramer::line())
    };
    let mut pre = lines(vec![remote("[::1]:9".parse().unwrap()), remote(v4)]);
    pre.set_connection_attempt_delay(Duration::from_secs(2));
    let conn = pre
        .initiate_with_timeout(Duration::from_secs(10))
        .await
        .expect("IPv4 wins");
    let trace = conn.trace();
    let failed = trace
        .find(K::AttemptFailed, "1.1.1")
        .unwrap_or_else(|| panic!("the IPv6 leaf's failure:\n{}", trace.timeline()));
    assert!(
        failed
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("no local endpoint of the same family")),
        "{}",
        trace.timeline()
    );
    let at = |kind, id| {
        trace
            .events
            .iter()
            .position(|e| e.event == kind && e.id == id)
    };
    assert!(
        at(K::AttemptFailed, "1.1.1") < at(K::AttemptStarted, "1.1.2"),
        "IPv4 starts after IPv6 failed, without the 2 s attempt delay:\n{}",
        trace.timeline()
    );
    conn.close().await.unwrap();

    let alone = lines(vec![remote("[::1]:9".parse().unwrap())]);
    let err = alone
        .initiate_with_timeout(Duration::from_secs(10))
        .await
        .expect_err("no IPv6 local endpoint");
    assert_eq!(err.reason, ErrorReason::EstablishmentFailed, "{err}");
    assert!(
        err.to_string()
            .contains("no local endpoint of the same family"),
        "{err}"
    );
}

#[tokio::test]
async fn every_candidate_failing_lists_each_reason() {
    let a = refused_port("::1");
    let b = refused_port("127.0.0.1");
    let events = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = events.clone();
    let mut pre = tcp_lines(vec![remote(a), remote(b)]);
    pre.on_trace(move |e| sink.lock().unwrap().push(e.clone()));
    let err = pre.initiate().await.expect_err("nothing listens");
    assert_eq!(err.reason, ErrorReason::EstablishmentFailed);
    assert_eq!(err.candidates.len(), 2, "{err}");
    assert_eq!(
        err.candidates[0].address.as_deref(),
        Some(a.to_string().as_str())
    );
    assert_eq!(
        err.candidates[1].address.as_deref(),
        Some(b.to_string().as_str())
    );
    for c in &err.candidates {
        assert!(c.message.to_lowercase().contains("refused"), "{c}");
        // The source is the OS's own error, code and all.
        let os = std::error::Error::source(c)
            .and_then(|s| s.downcast_ref::<std::io::Error>())
            .expect("an io::Error under each candidate");
        assert_eq!(os.kind(), std::io::ErrorKind::ConnectionRefused, "{os:?}");
        assert!(os.raw_os_error().is_some(), "{os:?}");
    }
    let text = err.to_string();
    assert!(
        text.contains(&a.to_string()) && text.contains(&b.to_string()),
        "{text}"
    );
    // The live trace ends with the establishment error.
    let ev = events.lock().unwrap();
    assert_eq!(ev.last().unwrap().event, K::EstablishmentError);
}

#[tokio::test]
async fn timeout_cancels_blackholed_attempts() {
    let bh = blackhole("::1", 0).unwrap();
    let pre = tcp_lines(vec![remote(bh.addr)]);
    let err = pre
        .initiate_with_timeout(Duration::from_millis(300))
        .await
        .expect_err("blackholed");
    assert_eq!(err.reason, ErrorReason::Timeout, "{err}");
    assert_eq!(err.candidates.len(), 1, "{err}");
}

#[tokio::test]
async fn the_live_trace_and_the_connections_trace_are_the_same() {
    // The Connection's trace is written out when first read, the live one
    // as it happens: event for event the same, history's reasons included
    // (the second race reorders, and its attempt delay is the adaptive one).
    let (bh, v4) = blackhole_v6_serving_v4().await;
    let mut pre = tcp_lines(vec![remote(bh.addr), remote(v4)]);
    pre.set_transport_context(postsocket::TransportContext::new());
    pre.racing_config_mut().connection_attempt_delay = Duration::from_millis(100);
    for _ in 0..2 {
        let events = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = events.clone();
        let mut pre = pre.clone();
        pre.on_trace(move |e| sink.lock().unwrap().push(e.clone()));
        let conn = pre.initiate().await.expect("IPv4 wins");
        let live = events.lock().unwrap().clone();
        assert_eq!(live, conn.trace().events, "{}", conn.trace().timeline());
        conn.abort();
    }
    let conn = pre.initiate().await.expect("IPv4 wins");
    let trace = conn.trace();
    assert!(
        trace.of_kind(K::Reordered).count() > 0,
        "{}",
        trace.timeline()
    );
    assert!(
        trace.of_kind(K::AttemptDelay).count() > 0,
        "{}",
        trace.timeline()
    );
    conn.abort();
}
