//! Selection before any network activity: contradictions, unsatisfiable
//! requirements, unknown names, security defaults, ranking.
// Native only (sockets, tokio, proptest): the browser tests are tests/browser_*.rs.
#![cfg(not(all(target_arch = "wasm32", target_os = "unknown")))]

use postsocket::racing::selection::select;
use postsocket::{
    Capabilities, ErrorReason, Preconnection, Preference, RemoteEndpoint, SecurityParameters,
    SelectionProperty as P, StackId, TransportProperties,
};

const REG: [Capabilities; 2] = [Capabilities::TCP, Capabilities::UDP];

fn ranked(props: &TransportProperties, framer: bool) -> Vec<StackId> {
    select(&REG, props, &SecurityParameters::disabled(), framer, None)
        .unwrap()
        .into_iter()
        .map(|c| c.stack)
        .collect()
}

#[test]
fn defaults_select_tcp_only() {
    assert_eq!(
        ranked(&TransportProperties::new(), false),
        vec![StackId::Tcp]
    );
}

#[test]
fn unreliable_datagram_profile_ranks_udp_first_and_keeps_tcp() {
    assert_eq!(
        ranked(&TransportProperties::unreliable_datagram(), true),
        vec![StackId::Udp, StackId::Tcp]
    );
    // Without a framer TCP cannot preserve boundaries.
    assert_eq!(
        ranked(&TransportProperties::unreliable_datagram(), false),
        vec![StackId::Udp]
    );
}

#[test]
fn reliable_message_needs_a_framer_on_tcp() {
    let err = select(
        &REG,
        &TransportProperties::reliable_message(),
        &SecurityParameters::disabled(),
        false,
        None,
    )
    .unwrap_err();
    assert_eq!(err.reason, ErrorReason::NoCandidates);
    assert!(err.to_string().contains("add a framer"), "{err}");
    assert_eq!(
        ranked(&TransportProperties::reliable_message(), true),
        vec![StackId::Tcp]
    );
}

#[test]
fn contradictions_are_invalid_configuration() {
    let props = TransportProperties::new()
        .prohibit(P::Reliability)
        .require(P::PreserveOrder);
    let err = select(&REG, &props, &SecurityParameters::disabled(), false, None).unwrap_err();
    assert_eq!(err.reason, ErrorReason::InvalidConfiguration);
    assert!(
        err.message.contains("reliability") && err.message.contains("preserveOrder"),
        "{err}"
    );
}

#[test]
fn unsatisfiable_requirement_lists_each_stack() {
    let props = TransportProperties::new().require(P::Multistreaming);
    let err = select(&REG, &props, &SecurityParameters::disabled(), true, None).unwrap_err();
    assert_eq!(err.reason, ErrorReason::NoCandidates);
    assert_eq!(err.candidates.len(), 2, "{err}");
}

#[test]
fn security_is_required_by_default() {
    let err = select(
        &REG,
        &TransportProperties::new(),
        &SecurityParameters::new(),
        false,
        None,
    )
    .unwrap_err();
    assert_eq!(err.reason, ErrorReason::NoCandidates);
    assert!(
        err.to_string().contains("SecurityParameters::disabled()"),
        "{err}"
    );
    // Opportunistic lets plaintext through.
    assert!(select(
        &REG,
        &TransportProperties::new(),
        &SecurityParameters::opportunistic(),
        false,
        None
    )
    .is_ok());
}

#[test]
fn names_are_checked() {
    let mut p = TransportProperties::new();
    assert!(
        p.set("PRESERVEMSGBOUNDARIES", Preference::Require).is_ok(),
        "case-insensitive"
    );
    assert_eq!(p.get(P::PreserveMsgBoundaries), Preference::Require);
    let e = p.set("reliabilty", Preference::Require).unwrap_err();
    assert_eq!(e.reason, ErrorReason::InvalidConfiguration);
    assert!(e.message.contains("reliabilty"));
    let e = p.set("connTimeout", true).unwrap_err();
    assert!(e.message.contains("connTimeout"), "{e}");
    assert!(p
        .set("connTimeout", std::time::Duration::from_secs(1))
        .is_ok());
    assert!(p.set("msgLifetime", 50u64).is_ok());
    assert!(TransportProperties::profile("reliable-message").is_ok());
    assert!(TransportProperties::profile("fast").is_err());
    assert!(Preference::parse("maybe").is_err());
    assert!(StackId::parse("sctp").is_err());
    let r = RemoteEndpoint::new()
        .with_ip_address("::1".parse().unwrap())
        .unwrap();
    let e = r.with_ip_address("127.0.0.1".parse().unwrap()).unwrap_err();
    assert!(e.message.contains("endpoint of its own"), "{e}");
    assert!(RemoteEndpoint::new().with_service("gopher-ish").is_err());
    assert_eq!(
        RemoteEndpoint::new().with_service("https").unwrap().port(),
        Some(443)
    );
}

#[test]
fn rfc_defaults() {
    let p = TransportProperties::new();
    for (prop, want) in [
        (P::Reliability, Preference::Require),
        (P::PreserveMsgBoundaries, Preference::NoPreference),
        (P::PreserveOrder, Preference::Require),
        (P::Multistreaming, Preference::Prefer),
        (P::CongestionControl, Preference::Require),
        (P::ZeroRttMsg, Preference::NoPreference),
        (P::UseTemporaryLocalAddress, Preference::Prefer),
    ] {
        assert_eq!(p.get(prop), want, "{}", prop.name());
    }
    assert_eq!(
        p.for_listener().get(P::UseTemporaryLocalAddress),
        Preference::Avoid
    );
    assert_eq!(p.connection.conn_priority, 100);
    assert_eq!(p.message_defaults.msg_priority, 100);
}

#[tokio::test]
async fn bad_attempt_delay_fails_before_network() {
    let r = RemoteEndpoint::parse("127.0.0.1:9").unwrap();
    let mut pre = Preconnection::new(
        vec![],
        vec![r],
        TransportProperties::new(),
        SecurityParameters::disabled(),
    );
    pre.set_connection_attempt_delay(std::time::Duration::from_millis(5));
    let err = pre.initiate().await.unwrap_err();
    assert_eq!(err.reason, ErrorReason::InvalidConfiguration);
    assert!(err.message.contains("5 ms"), "{err}");
    let empty = Preconnection::new(
        vec![],
        vec![],
        TransportProperties::new(),
        SecurityParameters::disabled(),
    );
    assert_eq!(
        empty.initiate().await.unwrap_err().reason,
        ErrorReason::InvalidConfiguration
    );
}

#[test]
fn protocol_specific_options_are_namespaced() {
    let mut p = TransportProperties::new();
    p.set("ws.path", "/echo").unwrap();
    assert_eq!(p.protocol_option("ws.path"), Some("/echo"));
    assert_eq!(p.protocol_option("wt.path"), None);
    let e = p.set("ws.colour", "blue").unwrap_err();
    assert!(e.message.contains("ws.path"), "{e}");
    let e = p.set("wt.path", "relative").unwrap_err();
    assert!(e.message.contains("absolute"), "{e}");
    // tcp.* are Connection Properties.
    p.set("tcp.userTimeoutEnabled", true).unwrap();
    assert!(p.connection.tcp.user_timeout_enabled);
    assert_eq!(StackId::parse("WSS").unwrap(), StackId::Wss);
}
