//! TLS over TCP end to end on 127.0.0.1: real rustls handshakes with
//! certificates made here by rcgen, the negative matrix (each failure names
//! its cause), no plaintext fallback, and interop with OpenSSL's s_server
//! and s_client.
// Native only (sockets, tokio, proptest): the browser tests are tests/browser_*.rs.
#![cfg(not(all(target_arch = "wasm32", target_os = "unknown")))]

mod common;
use postsocket::framer::{DelimiterFramer, LengthPrefixFramer};
use postsocket::security::{certificate_sha256, hex};
use postsocket::{
    Connection, ErrorReason, Identity, LocalEndpoint, Preconnection, ReceiveEvent, RemoteEndpoint,
    SecurityParameters, StackId, TransportProperties,
};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A test CA that issues leaf certificates.
struct Ca {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

fn ca(name: &str) -> Ca {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    Ca {
        pem: cert.pem(),
        issuer: Issuer::new(params, key),
    }
}

/// A leaf for `names`, issued by `ca` (or self-signed), valid `days` around now
/// (negative: expired).
fn leaf(ca: Option<&Ca>, names: &[&str], expired: bool, client: bool) -> (String, String) {
    let mut params =
        CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    params.distinguished_name.push(
        DnType::CommonName,
        names.first().copied().unwrap_or("client"),
    );
    params.extended_key_usages = vec![if client {
        ExtendedKeyUsagePurpose::ClientAuth
    } else {
        ExtendedKeyUsagePurpose::ServerAuth
    }];
    if expired {
        params.not_before = rcgen::date_time_ymd(2019, 1, 1);
        params.not_after = rcgen::date_time_ymd(2020, 1, 1);
    }
    let key = KeyPair::generate().unwrap();
    let cert = match ca {
        Some(ca) => params.signed_by(&key, &ca.issuer).unwrap(),
        None => params.self_signed(&key).unwrap(),
    };
    (cert.pem(), key.serialize_pem())
}

/// A Listener preconnection on 127.0.0.1 for `stacks`, serving `cert`.
fn secure_listener_pre(cert: &(String, String), stacks: Vec<StackId>) -> Preconnection {
    let mut pre = Preconnection::new(
        vec![local()],
        vec![],
        TransportProperties::new(),
        server_security(cert),
    );
    pre.set_protocols(stacks);
    pre
}

fn server_security(cert: &(String, String)) -> SecurityParameters {
    let mut sec = SecurityParameters::new();
    sec.server_certificate = vec![Identity::from_pem(&cert.0, &cert.1).unwrap()];
    sec
}

fn local() -> LocalEndpoint {
    LocalEndpoint::new()
        .with_ip_address([127, 0, 0, 1].into())
        .unwrap()
        .with_port(0)
        .unwrap()
}

fn remote(addr: SocketAddr) -> RemoteEndpoint {
    RemoteEndpoint::new().with_socket_addr(addr).unwrap()
}

fn remote_host(host: &str, port: u16) -> RemoteEndpoint {
    RemoteEndpoint::new()
        .with_host_name(host)
        .unwrap()
        .with_port(port)
        .unwrap()
}

/// A postsocket TLS Listener with a length-prefix framer, echoing every
/// Message; returns its address and a receiver of its establishment errors.
async fn echo_listener(
    sec: SecurityParameters,
) -> (SocketAddr, tokio::sync::mpsc::UnboundedReceiver<String>) {
    let mut pre = Preconnection::new(vec![local()], vec![], TransportProperties::new(), sec);
    // TLS over TCP under test: QUIC (raced first by default) is left out.
    pre.set_protocols(vec![StackId::Tls, StackId::Tcp, StackId::Udp]);
    pre.add_framer(LengthPrefixFramer::new());
    let l = pre.listen().await.expect("listen");
    let addr = l.local_addr();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            match l.next_event().await {
                postsocket::ListenerEvent::ConnectionReceived(c) => {
                    tokio::spawn(echo(c));
                }
                postsocket::ListenerEvent::EstablishmentError(e) => {
                    let _ = tx.send(e.to_string());
                }
                postsocket::ListenerEvent::Stopped => break,
            }
        }
    });
    (addr, rx)
}

async fn echo(c: Connection) {
    while let Ok(ReceiveEvent::Received { data, .. }) = c.receive().await {
        if c.send(data, None, true).await.is_err() {
            break;
        }
    }
    let _ = c.close().await;
}

fn client(remotes: Vec<RemoteEndpoint>, sec: SecurityParameters) -> Preconnection {
    let mut pre = Preconnection::new(vec![], remotes, TransportProperties::new(), sec);
    // TLS over TCP under test: QUIC (raced first by default) is left out.
    pre.set_protocols(vec![StackId::Tls, StackId::Tcp, StackId::Udp]);
    pre.add_framer(LengthPrefixFramer::new());
    pre
}

async fn round_trip(conn: &Connection) {
    let mut msgs: Vec<Vec<u8>> = vec![b"hello tls".to_vec(), vec![], vec![9u8; 200_000]];
    for m in &msgs {
        conn.send(m.clone(), None, true).await.unwrap();
    }
    // A burst of small, distinct Messages sent before any is awaited: they
    // queue, and go out several frames to a write (gathered into one buffer
    // when small), each whole and in order.
    let burst: Vec<Vec<u8>> = (0..300u32)
        .map(|i| (0..i % 97).map(|j| (i * 7 + j) as u8).collect())
        .collect();
    let sends: Vec<_> = burst
        .iter()
        .map(|m| conn.send(m.clone(), None, true))
        .collect();
    for s in sends {
        s.await.unwrap();
    }
    msgs.extend(burst);
    for m in &msgs {
        match tokio::time::timeout(Duration::from_secs(10), conn.receive())
            .await
            .expect("echo in time")
            .unwrap()
        {
            ReceiveEvent::Received { data, .. } => assert_eq!(&data, m),
            other => panic!("expected a whole Message, got {other:?}"),
        }
    }
}

async fn fails(pre: Preconnection) -> postsocket::Error {
    let e = tokio::time::timeout(Duration::from_secs(15), pre.initiate())
        .await
        .expect("initiate ends in time")
        .map(|_| ())
        .expect_err("establishment must fail");
    eprintln!("establishment error: {e}");
    e
}

fn assert_names(e: &postsocket::Error, what: &[&str]) {
    let text = format!("{e} {:?}", e.candidates);
    for w in what {
        assert!(text.contains(w), "error does not name `{w}`: {text}");
    }
}

#[tokio::test]
async fn echo_with_trusted_ca_and_host_name() {
    let ca = ca("postsocket test CA");
    let cert = leaf(Some(&ca), &["localhost", "127.0.0.1"], false, false);
    let (addr, _) = echo_listener(server_security(&cert)).await;
    let mut sec = SecurityParameters::new();
    sec.trusted_ca = vec![ca.pem.clone()];
    // By name: resolves to 127.0.0.1 (and maybe ::1, where nothing listens) and verifies "localhost".
    let conn = client(vec![remote_host("localhost", addr.port())], sec.clone())
        .initiate()
        .await
        .unwrap();
    assert_eq!(conn.stack(), StackId::Tls);
    round_trip(&conn).await;
    conn.close().await.unwrap();
    // By IP address: verifies the IP SAN.
    let conn = client(vec![remote(addr)], sec).initiate().await.unwrap();
    assert_eq!(conn.stack(), StackId::Tls);
    round_trip(&conn).await;
    conn.close().await.unwrap();
}

#[tokio::test]
async fn echo_with_pinned_self_signed_certificate() {
    let cert = leaf(None, &["some.name.example"], false, false);
    let (addr, _) = echo_listener(server_security(&cert)).await;
    let mut sec = SecurityParameters::new();
    sec.set(
        "pinnedServerCertificate",
        &[&hex(&certificate_sha256(&cert.0).unwrap())],
    )
    .unwrap();
    let conn = client(vec![remote(addr)], sec).initiate().await.unwrap();
    assert_eq!(conn.stack(), StackId::Tls);
    round_trip(&conn).await;
    // Clone opens another TLS connection with the same parameters.
    let c2 = conn.clone_in_group(None, None).await.unwrap();
    assert_eq!(c2.stack(), StackId::Tls);
    round_trip(&c2).await;
    c2.close().await.unwrap();
    conn.close().await.unwrap();
}

/// The `tcp.*` Connection Properties apply to every stack over TCP, TLS
/// included (the capability table's `over_tcp`): with
/// tcp.userTimeoutChangeable false, a TLS Connection refuses a new user
/// timeout, naming the property.
#[tokio::test]
async fn tcp_user_timeout_rules_hold_over_tls() {
    let cert = leaf(None, &["127.0.0.1"], false, false);
    let (addr, _) = echo_listener(server_security(&cert)).await;
    let mut sec = SecurityParameters::new();
    sec.pinned_server_certificate = vec![certificate_sha256(&cert.0).unwrap()];
    let mut pre = client(vec![remote(addr)], sec);
    pre.transport_properties_mut()
        .connection
        .set("tcp.userTimeoutChangeable", false)
        .unwrap();
    let conn = pre.initiate().await.unwrap();
    assert_eq!(conn.stack(), StackId::Tls);
    let e = conn
        .set_property("tcp.userTimeoutValue", 5_000u64)
        .unwrap_err();
    assert_eq!(e.reason, ErrorReason::InvalidConfiguration, "{e}");
    assert!(e.message.contains("tcp.userTimeoutChangeable"), "{e}");
    round_trip(&conn).await;
    conn.close().await.unwrap();
}

#[tokio::test]
async fn expired_certificate_fails_naming_expiry() {
    let ca = ca("ca");
    let cert = leaf(Some(&ca), &["127.0.0.1"], true, false);
    let (addr, _) = echo_listener(server_security(&cert)).await;
    let mut sec = SecurityParameters::new();
    sec.trusted_ca = vec![ca.pem.clone()];
    let e = fails(client(vec![remote(addr)], sec)).await;
    assert_eq!(e.reason, ErrorReason::EstablishmentFailed);
    assert_names(
        &e,
        &[
            "TLS handshake with 127.0.0.1",
            "expired",
            "2020-01-01 00:00:00 UTC",
        ],
    );
    // An expired pinned certificate fails too, naming its dates.
    let mut sec = SecurityParameters::new();
    sec.pinned_server_certificate = vec![certificate_sha256(&cert.0).unwrap()];
    let e = fails(client(vec![remote(addr)], sec)).await;
    assert_names(
        &e,
        &[
            "pinned server certificate is expired",
            "2020-01-01 00:00:00 UTC",
        ],
    );
}

#[tokio::test]
async fn wrong_name_fails_naming_the_name() {
    let ca = ca("ca");
    let cert = leaf(Some(&ca), &["other.example"], false, false);
    let (addr, _) = echo_listener(server_security(&cert)).await;
    let mut sec = SecurityParameters::new();
    sec.trusted_ca = vec![ca.pem.clone()];
    sec.server_name = Some("expected.example".into());
    let e = fails(client(vec![remote(addr)], sec)).await;
    assert_names(
        &e,
        &["not valid for name", "expected.example", "other.example"],
    );
}

#[tokio::test]
async fn untrusted_ca_fails() {
    let ca1 = ca("server's CA");
    let ca2 = ca("some other CA");
    let cert = leaf(Some(&ca1), &["127.0.0.1"], false, false);
    let (addr, _) = echo_listener(server_security(&cert)).await;
    let mut sec = SecurityParameters::new();
    sec.trusted_ca = vec![ca2.pem.clone()];
    let e = fails(client(vec![remote(addr)], sec)).await;
    assert_names(&e, &["invalid peer certificate", "UnknownIssuer"]);
    // The source chain reaches rustls' own error, typed: the candidate,
    // the attempt's io::Error, then the rustls::Error.
    let found = common::in_source_chain::<rustls::Error>(&e);
    assert!(
        matches!(
            found,
            Some(rustls::Error::InvalidCertificate(
                rustls::CertificateError::UnknownIssuer
            ))
        ),
        "{found:?} in the chain of {e}"
    );
    let candidate = std::error::Error::source(&e)
        .and_then(|s| s.downcast_ref::<postsocket::CandidateFailure>())
        .expect("the failed candidate comes first");
    assert_eq!(candidate.stack.as_deref(), Some("tls"));
}

#[tokio::test]
async fn pin_mismatch_names_both_hashes() {
    let cert = leaf(None, &["127.0.0.1"], false, false);
    let (addr, _) = echo_listener(server_security(&cert)).await;
    let wrong = [0x11u8; 32];
    let mut sec = SecurityParameters::new();
    sec.pinned_server_certificate = vec![wrong];
    let e = fails(client(vec![remote(addr)], sec)).await;
    assert_names(
        &e,
        &[
            "pinned server certificate mismatch",
            &hex(&certificate_sha256(&cert.0).unwrap()),
            &hex(&wrong),
        ],
    );
}

#[tokio::test]
async fn client_certificate_required_but_not_given() {
    let ca = ca("ca");
    let cert = leaf(Some(&ca), &["127.0.0.1"], false, false);
    let mut server = server_security(&cert);
    server.require_client_certificate = true;
    server.trusted_ca = vec![ca.pem.clone()];
    let (addr, mut errors) = echo_listener(server).await;
    let mut sec = SecurityParameters::new();
    sec.trusted_ca = vec![ca.pem.clone()];
    let e = fails(client(vec![remote(addr)], sec.clone())).await;
    assert_names(
        &e,
        &[
            "server requires a client certificate",
            "CertificateRequired",
        ],
    );
    let le = tokio::time::timeout(Duration::from_secs(5), errors.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(
        le.contains("TLS handshake with 127.0.0.1") && le.contains("peer sent no certificates"),
        "{le}"
    );
    // With a client certificate from the CA it works.
    let c = leaf(Some(&ca), &["client.example"], false, true);
    sec.client_certificate = vec![Identity::from_pem(&c.0, &c.1).unwrap()];
    let conn = client(vec![remote(addr)], sec).initiate().await.unwrap();
    round_trip(&conn).await;
    conn.close().await.unwrap();
}

/// A Listener that requires client certificates cannot also take
/// plaintext clients: opportunistic security with
/// require_client_certificate is refused, saying why (a plain TCP client
/// got in with no certificate).
#[tokio::test]
async fn required_client_certificates_contradict_opportunistic_security() {
    let ca = ca("ca");
    let cert = leaf(Some(&ca), &["127.0.0.1"], false, false);
    let mut server = SecurityParameters::opportunistic();
    server.server_certificate = server_security(&cert).server_certificate;
    server.require_client_certificate = true;
    server.trusted_ca = vec![ca.pem.clone()];
    let mut pre = Preconnection::new(vec![local()], vec![], TransportProperties::new(), server);
    pre.set_protocols(vec![StackId::Tls, StackId::Tcp]);
    pre.add_framer(LengthPrefixFramer::new());
    let e = pre.listen().await.expect_err("contradictory");
    assert_eq!(e.reason, ErrorReason::InvalidConfiguration, "{e}");
    assert!(
        e.message
            .contains("require_client_certificate contradicts opportunistic"),
        "{e}"
    );
    // And with security disabled (plain TCP only).
    let mut server = SecurityParameters::disabled();
    server.require_client_certificate = true;
    let mut pre = Preconnection::new(vec![local()], vec![], TransportProperties::new(), server);
    pre.set_protocols(vec![StackId::Tcp]);
    pre.add_framer(LengthPrefixFramer::new());
    let e = pre.listen().await.expect_err("contradictory");
    assert!(
        e.message
            .contains("require_client_certificate contradicts disabled"),
        "{e}"
    );
}

#[tokio::test]
async fn identity_challenge_callback_signs_for_the_client() {
    let ca = ca("ca");
    let cert = leaf(Some(&ca), &["127.0.0.1"], false, false);
    let mut server = server_security(&cert);
    server.require_client_certificate = true;
    server.trusted_ca = vec![ca.pem.clone()];
    let (addr, _) = echo_listener(server).await;
    // The client's key stays outside postsocket: only the chain is given.
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["client.example".to_string()]).unwrap();
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let chain = params.signed_by(&key, &ca.issuer).unwrap().pem();
    let mut sec = SecurityParameters::new();
    sec.trusted_ca = vec![ca.pem.clone()];
    sec.client_certificate = vec![Identity::from_pem_chain(&chain).unwrap()];
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let c2 = calls.clone();
    sec.set_identity_challenge_callback(move |msg| {
        c2.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        rcgen::SigningKey::sign(&key, msg).map_err(|e| e.to_string())
    });
    let conn = client(vec![remote(addr)], sec).initiate().await.unwrap();
    round_trip(&conn).await;
    assert!(calls.load(std::sync::atomic::Ordering::SeqCst) >= 1);
    conn.close().await.unwrap();
}

#[tokio::test]
async fn alpn_mismatch_fails() {
    let cert = leaf(None, &["127.0.0.1"], false, false);
    let mut server = server_security(&cert);
    server.alpn = vec!["a".into()];
    let (addr, _) = echo_listener(server).await;
    let mut sec = SecurityParameters::new();
    sec.pinned_server_certificate = vec![certificate_sha256(&cert.0).unwrap()];
    sec.alpn = vec!["b".into()];
    let e = fails(client(vec![remote(addr)], sec.clone())).await;
    assert_names(&e, &["NoApplicationProtocol"]);
    sec.alpn = vec!["b".into(), "a".into()];
    let conn = client(vec![remote(addr)], sec).initiate().await.unwrap();
    round_trip(&conn).await;
}

/// ALPN holds when one side offers none (rustls refuses only when both
/// offer and none matches): a client whose `alpn` asks for one fails
/// against a plain tokio-rustls server that speaks no ALPN, and a Listener
/// whose `alpn` accepts only some turns away a plain rustls client that
/// offers none, reporting why (both went ahead before).
#[tokio::test]
async fn alpn_holds_when_the_peer_offers_none() {
    let cert = common::self_signed();
    // A server without ALPN.
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(
        common::rustls_server_config(&cert.pem, &cert.key),
    ));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let plain_server = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(tls) = acceptor.accept(s).await {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    drop(tls);
                }
            });
        }
    });
    // TLS, and wss the same.
    for (stack, named) in [(StackId::Tls, "h2"), (StackId::Wss, "wss")] {
        let mut sec = common::pinned(&cert);
        sec.alpn = vec!["h2".into()];
        let mut pre = client(vec![remote(plain_server)], sec);
        pre.set_protocols(vec![stack]);
        let e = fails(pre).await;
        assert_names(
            &e,
            &["the server chose no application protocol (ALPN)", named],
        );
    }

    // A Listener with ALPN, and a plain rustls client that offers none.
    let mut server = SecurityParameters::new();
    server.server_certificate = common::server_security(&cert).server_certificate;
    server.alpn = vec!["a".into()];
    let (addr, mut errors) = echo_listener(server).await;
    let config = common::rustls_client_config(&cert.pem);
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect(name, tcp)
        .await
        .expect("the handshake itself completes");
    // The Listener reports the client and closes: the client reads the end.
    let le = tokio::time::timeout(Duration::from_secs(5), errors.recv())
        .await
        .expect("a report")
        .unwrap();
    assert!(
        le.contains("the client offered no application protocol (ALPN)") && le.contains("\"a\""),
        "{le}"
    );
    use tokio::io::AsyncReadExt;
    let mut b = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(5), tls.read(&mut b))
        .await
        .expect("closed in time");
    assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
}

/// A RemoteEndpoint with a host name and an IP address connects to the
/// address and verifies the certificate for the name (and sends it as
/// SNI): a certificate for `localhost` only is accepted at 127.0.0.1 named
/// `localhost` (the name was dropped, and the certificate checked against
/// the address, so it failed).
#[tokio::test]
async fn a_host_name_given_with_its_address_is_the_name_verified() {
    let ca = ca("ca");
    let cert = leaf(Some(&ca), &["localhost"], false, false);
    let (addr, _) = echo_listener(server_security(&cert)).await;
    let mut sec = SecurityParameters::new();
    sec.trusted_ca = vec![ca.pem.clone()];
    let both = RemoteEndpoint::new()
        .with_host_name("localhost")
        .unwrap()
        .with_ip_address(addr.ip())
        .unwrap()
        .with_port(addr.port())
        .unwrap();
    let conn = client(vec![both], sec.clone())
        .initiate()
        .await
        .expect("verified for localhost");
    round_trip(&conn).await;
    // The address alone is not what the certificate names.
    let e = fails(client(vec![remote(addr)], sec)).await;
    assert_names(&e, &["127.0.0.1"]);
}

#[tokio::test]
async fn trust_verification_callback_can_reject() {
    let cert = leaf(None, &["127.0.0.1"], false, false);
    let (addr, _) = echo_listener(server_security(&cert)).await;
    let mut sec = SecurityParameters::new();
    sec.pinned_server_certificate = vec![certificate_sha256(&cert.0).unwrap()];
    let seen = std::sync::Arc::new(std::sync::Mutex::new(None));
    let s2 = seen.clone();
    sec.set_trust_verification_callback(move |ctx| {
        *s2.lock().unwrap() = Some((ctx.chain.len(), ctx.server_name.clone()));
        Err("policy says no to this server".into())
    });
    let e = fails(client(vec![remote(addr)], sec)).await;
    assert_names(
        &e,
        &["trust verification callback: policy says no to this server"],
    );
    assert_eq!(
        seen.lock().unwrap().clone(),
        Some((1, "127.0.0.1".to_string()))
    );
}

#[tokio::test]
async fn no_plaintext_fallback_with_default_security() {
    // A TLS server with a certificate the client does not trust...
    let cert = leaf(None, &["127.0.0.1"], false, false);
    let (tls_addr, _) = echo_listener(server_security(&cert)).await;
    // ... and a plain TCP echo server, on another port.
    let mut pre = Preconnection::new(
        vec![local()],
        vec![],
        TransportProperties::new(),
        SecurityParameters::disabled(),
    );
    // TLS over TCP under test: QUIC (raced first by default) is left out.
    pre.set_protocols(vec![StackId::Tls, StackId::Tcp, StackId::Udp]);
    pre.add_framer(LengthPrefixFramer::new());
    let plain = pre.listen().await.unwrap();
    let plain_addr = plain.local_addr();
    tokio::spawn(async move {
        while let Ok(c) = plain.accept().await {
            tokio::spawn(echo(c));
        }
    });
    // Default security: only TLS is raced, to both addresses; the plaintext
    // server cannot talk TLS, and nothing falls back to plain TCP.
    let e = fails(client(
        vec![remote(tls_addr), remote(plain_addr)],
        SecurityParameters::new(),
    ))
    .await;
    assert_eq!(e.reason, ErrorReason::EstablishmentFailed);
    assert!(!e.candidates.is_empty());
    for c in &e.candidates {
        assert_eq!(c.stack.as_deref(), Some("tls"), "{c}");
    }
    assert_names(&e, &["UnknownIssuer", "does it speak TLS?"]);
    // The plain server is reachable with disabled security.
    let conn = client(vec![remote(plain_addr)], SecurityParameters::disabled())
        .initiate()
        .await
        .unwrap();
    assert_eq!(conn.stack(), StackId::Tcp);
    // Opportunistic: TLS (unauthenticated) is used with the untrusted server.
    let conn = client(vec![remote(tls_addr)], SecurityParameters::opportunistic())
        .initiate()
        .await
        .unwrap();
    assert_eq!(conn.stack(), StackId::Tls);
    round_trip(&conn).await;
}

#[tokio::test]
async fn listener_without_certificate_is_a_configuration_error() {
    let pre = Preconnection::new(
        vec![local()],
        vec![],
        TransportProperties::new(),
        SecurityParameters::new(),
    );
    let e = pre.listen().await.unwrap_err();
    assert_eq!(e.reason, ErrorReason::InvalidConfiguration);
    assert!(e.to_string().contains("server_certificate"), "{e}");
}

#[test]
fn identity_pem_errors_name_the_problem() {
    let cert = leaf(None, &["x.example"], false, false);
    let e = Identity::from_pem("not pem", &cert.1).unwrap_err();
    assert!(e.to_string().contains("BEGIN CERTIFICATE"), "{e}");
    let e = Identity::from_pem(&cert.0, "nope").unwrap_err();
    assert!(e.to_string().contains("private key"), "{e}");
    assert!(Identity::from_pem(&cert.0, &cert.1).is_ok());
    let e = postsocket::security::parse_sha256_hex("abcd").unwrap_err();
    assert!(e.to_string().contains("64 hex digits"), "{e}");
}

// ---------------------------------------------------------------------------
// Interop with OpenSSL.

fn openssl() -> &'static str {
    if Command::new("openssl").arg("version").output().is_err() {
        panic!("these tests need the openssl command line tool: apt-get install openssl");
    }
    "openssl"
}

/// Kills the child when dropped.
struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn write_temp(name: &str, text: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("postsocket-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn interop_postsocket_client_to_openssl_s_server() {
    let openssl = openssl();
    let ca = ca("ca");
    let cert = leaf(Some(&ca), &["localhost", "127.0.0.1"], false, false);
    let c = write_temp("s_server-cert.pem", &cert.0);
    let k = write_temp("s_server-key.pem", &cert.1);
    let port = free_port();
    // -rev: s_server answers every line with the line reversed.
    let server = Kill(
        Command::new(openssl)
            .args(["s_server", "-rev", "-quiet", "-accept"])
            .arg(port.to_string())
            .arg("-cert")
            .arg(&c)
            .arg("-key")
            .arg(&k)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn openssl s_server"),
    );
    let mut sec = SecurityParameters::new();
    sec.trusted_ca = vec![ca.pem.clone()];
    let mut pre = Preconnection::new(
        vec![],
        vec![remote(SocketAddr::from(([127, 0, 0, 1], port)))],
        TransportProperties::new(),
        sec,
    );
    // TLS over TCP under test: QUIC (raced first by default) is left out.
    pre.set_protocols(vec![StackId::Tls, StackId::Tcp, StackId::Udp]);
    pre.add_framer(DelimiterFramer::line());
    let deadline = Instant::now() + Duration::from_secs(10);
    let conn = loop {
        match pre.initiate().await {
            Ok(c) => break c,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("cannot reach openssl s_server: {e}"),
        }
    };
    assert_eq!(conn.stack(), StackId::Tls);
    conn.send(b"hello openssl".to_vec(), None, true)
        .await
        .unwrap();
    let got = tokio::time::timeout(Duration::from_secs(10), conn.receive())
        .await
        .expect("reply in time")
        .unwrap();
    assert_eq!(got.data(), b"lssnepo olleh");
    conn.abort();
    drop(server);
}

#[tokio::test]
async fn interop_openssl_s_client_to_postsocket_listener() {
    let openssl = openssl();
    let ca = ca("ca");
    let cert = leaf(Some(&ca), &["localhost", "127.0.0.1"], false, false);
    let ca_file = write_temp("s_client-ca.pem", &ca.pem);
    let mut pre = Preconnection::new(
        vec![local()],
        vec![],
        TransportProperties::new(),
        server_security(&cert),
    );
    // TLS over TCP under test: QUIC (raced first by default) is left out.
    pre.set_protocols(vec![StackId::Tls, StackId::Tcp, StackId::Udp]);
    pre.add_framer(DelimiterFramer::line());
    let l = pre.listen().await.unwrap();
    let addr = l.local_addr();
    tokio::spawn(async move {
        while let Ok(c) = l.accept().await {
            tokio::spawn(echo(c));
        }
    });
    let out = tokio::task::spawn_blocking(move || {
        let mut child = Kill(
            Command::new(openssl)
                .args(["s_client", "-quiet", "-verify_return_error", "-connect"])
                .arg(addr.to_string())
                .arg("-CAfile")
                .arg(&ca_file)
                .args(["-servername", "localhost", "-verify_hostname", "localhost"])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn openssl s_client"),
        );
        let mut stdin = child.0.stdin.take().unwrap();
        stdin.write_all(b"hello from s_client\n").unwrap();
        stdin.flush().unwrap();
        let stdout = child.0.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(Duration::from_secs(10)).unwrap_or_default();
        drop(stdin);
        drop(child);
        line
    })
    .await
    .unwrap();
    assert_eq!(out, "hello from s_client\n");
}

#[test]
fn selection_by_security_mode() {
    use postsocket::racing::selection::select;
    use postsocket::Capabilities;
    let reg = [Capabilities::TLS, Capabilities::TCP, Capabilities::UDP];
    let props = TransportProperties::new();
    let stacks = |sec: &SecurityParameters| -> Vec<StackId> {
        select(&reg, &props, sec, true, None)
            .unwrap()
            .iter()
            .map(|c| c.stack)
            .collect()
    };
    // Required (default): TLS only, never plaintext.
    assert_eq!(stacks(&SecurityParameters::new()), vec![StackId::Tls]);
    // Opportunistic: TLS first, then plain TCP.
    assert_eq!(
        stacks(&SecurityParameters::opportunistic()),
        vec![StackId::Tls, StackId::Tcp]
    );
    // Disabled: no TLS.
    assert_eq!(stacks(&SecurityParameters::disabled()), vec![StackId::Tcp]);
    // allowedSecurityProtocols without any TLS version excludes TLS.
    let mut dtls_only = SecurityParameters::new();
    dtls_only
        .set("allowedSecurityProtocols", &["dtls1.2"])
        .unwrap();
    assert!(select(&reg, &props, &dtls_only, true, None).is_err());
}

#[tokio::test]
async fn tls12_only_when_asked() {
    let cert = leaf(None, &["127.0.0.1"], false, false);
    let mut server = server_security(&cert);
    server.set("allowedSecurityProtocols", &["tls1.3"]).unwrap();
    let (addr, _) = echo_listener(server).await;
    let mut sec = SecurityParameters::new();
    sec.pinned_server_certificate = vec![certificate_sha256(&cert.0).unwrap()];
    sec.set("allowedSecurityProtocols", &["tls1.2"]).unwrap();
    let e = fails(client(vec![remote(addr)], sec.clone())).await;
    assert_names(&e, &["TLS handshake", "ProtocolVersion"]);
    // A TLS 1.2 client works with a default server.
    let (addr12, _) = echo_listener(server_security(&cert)).await;
    let conn = client(vec![remote(addr12)], sec.clone())
        .initiate()
        .await
        .unwrap();
    round_trip(&conn).await;
    sec.set("allowedSecurityProtocols", &["tls1.2", "tls1.3"])
        .unwrap();
    let conn = client(vec![remote(addr)], sec).initiate().await.unwrap();
    round_trip(&conn).await;
}

#[tokio::test]
async fn abort_resets_and_final_message_ends_cleanly() {
    let cert = leaf(None, &["127.0.0.1"], false, false);
    // TLS over TCP under test: QUIC (raced first by default) is left out.
    let mut pre = secure_listener_pre(&cert, vec![StackId::Tls, StackId::Tcp, StackId::Udp]);
    pre.add_framer(LengthPrefixFramer::new());
    let l = pre.listen().await.unwrap();
    let addr = l.local_addr();
    let mut sec = SecurityParameters::new();
    sec.pinned_server_certificate = vec![certificate_sha256(&cert.0).unwrap()];
    // A final Message: close_notify and FIN; the server sees the final Message, then the end.
    let conn = client(vec![remote(addr)], sec.clone())
        .initiate()
        .await
        .unwrap();
    let server = l.accept().await.unwrap();
    let ctx = postsocket::MessageContext::new()
        .with("final", true)
        .unwrap();
    conn.send(b"last".to_vec(), Some(ctx), true).await.unwrap();
    match tokio::time::timeout(Duration::from_secs(5), server.receive())
        .await
        .unwrap()
        .unwrap()
    {
        ReceiveEvent::Received { data, .. } => assert_eq!(&data[..], b"last"),
        other => panic!("{other:?}"),
    }
    let end = tokio::time::timeout(Duration::from_secs(5), server.receive())
        .await
        .expect("the end reaches the peer");
    let end = end
        .expect_err("nothing after the final Message")
        .to_string();
    assert!(end.contains("end of stream"), "clean end expected: {end}");
    // Abort: the peer's pending Receive fails instead of seeing a clean end.
    let conn = client(vec![remote(addr)], sec).initiate().await.unwrap();
    let server = l.accept().await.unwrap();
    conn.abort();
    let r = tokio::time::timeout(Duration::from_secs(5), server.receive())
        .await
        .expect("the abort reaches the peer");
    let r = r
        .expect_err("the abort fails the peer's Receive")
        .to_string();
    assert!(r.contains("reset"), "a reset expected: {r}");
}

/// A server that accepts TCP and then says nothing: the TLS handshake never
/// ends, so the establishment must (issue: it hung for over 60 s).
async fn silent_tcp_server() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = l.accept().await {
            held.push(s); // keep it open, read nothing, write nothing
        }
    });
    (addr, task)
}

fn tls_only(addr: SocketAddr, props: TransportProperties) -> Preconnection {
    let mut sec = SecurityParameters::new();
    sec.pinned_server_certificate = vec![[0u8; 32]];
    let mut pre = Preconnection::new(vec![], vec![remote(addr)], props, sec);
    pre.set_protocols(vec![StackId::Tls]);
    pre
}

#[tokio::test]
async fn conn_timeout_bounds_an_establishment_against_a_silent_tls_server() {
    let (addr, _server) = silent_tcp_server().await;
    let mut props = TransportProperties::new();
    props
        .connection
        .set("connTimeout", Duration::from_millis(300))
        .unwrap();
    let started = Instant::now();
    let e = tokio::time::timeout(Duration::from_secs(10), tls_only(addr, props).initiate())
        .await
        .expect("initiate ends by itself")
        .map(|_| ())
        .expect_err("the server never answers");
    assert_eq!(e.reason, ErrorReason::Timeout, "{e}");
    assert!(e.message.contains("300 ms"), "{e}");
    eprintln!("failed after {:?}: {e}", started.elapsed());
    // initiate_with_timeout wins over connTimeout.
    let mut props = TransportProperties::new();
    props
        .connection
        .set("connTimeout", Duration::from_secs(60))
        .unwrap();
    let e = tokio::time::timeout(
        Duration::from_secs(10),
        tls_only(addr, props).initiate_with_timeout(Duration::from_millis(200)),
    )
    .await
    .expect("initiate_with_timeout ends by itself")
    .map(|_| ())
    .expect_err("the server never answers");
    assert_eq!(e.reason, ErrorReason::Timeout, "{e}");
    assert!(e.message.contains("200 ms"), "{e}");
}

/// A plain quinn server (not postsocket) with `cert` (PEM, key PEM) and
/// postsocket's ALPN, accepting one connection and holding it.
fn quinn_server(cert: &(String, String)) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let ep = common::quinn_server(&cert.0, &cert.1);
    let addr = ep.local_addr().unwrap();
    let task = tokio::spawn(async move {
        while let Some(incoming) = ep.accept().await {
            if let Ok(conn) = incoming.await {
                tokio::spawn(async move {
                    let _ = conn.accept_bi().await;
                    conn.closed().await;
                });
            }
        }
    });
    (addr, task)
}

/// QUIC honours SecurityParameters::server_name as TLS does: reached by its
/// IP address, a server whose certificate names only `quic.example` is
/// accepted when that name is given, and refused (naming both names) when
/// another is.
#[tokio::test]
async fn quic_verifies_the_server_name_given_in_the_security_parameters() {
    let ca = ca("ca");
    let cert = leaf(Some(&ca), &["quic.example"], false, false);
    let (addr, _server) = quinn_server(&cert);
    let quic = |name: &str| {
        let mut sec = SecurityParameters::new();
        sec.trusted_ca = vec![ca.pem.clone()];
        sec.server_name = Some(name.into());
        let mut pre =
            Preconnection::new(vec![], vec![remote(addr)], TransportProperties::new(), sec);
        pre.set_protocols(vec![StackId::Quic]);
        pre
    };
    let conn = tokio::time::timeout(Duration::from_secs(10), quic("quic.example").initiate())
        .await
        .expect("in time")
        .unwrap_or_else(|e| panic!("the name in the certificate: {e}"));
    assert_eq!(conn.stack(), StackId::Quic);
    conn.abort();
    let e = fails(quic("expected.example")).await;
    assert_names(
        &e,
        &["not valid for name", "expected.example", "quic.example"],
    );
}

/// A Listener whose connection limit is 0 refuses a flood before any
/// handshake: TCP peers are reset at once (without the limit they would
/// wait in the TLS sniff), a QUIC peer gets CONNECTION_REFUSED, and the
/// application sees nothing.
#[tokio::test]
async fn a_listener_with_limit_0_refuses_a_flood_before_any_handshake() {
    use tokio::io::AsyncReadExt;
    let cert = leaf(None, &["127.0.0.1"], false, false);
    let l = secure_listener_pre(&cert, vec![StackId::Tls, StackId::Quic])
        .listen()
        .await
        .unwrap();
    l.set_new_connection_limit(Some(0));
    let addr = l.local_addr();
    for i in 0..20 {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut buf = [0u8; 16];
        let r = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("peer {i}: not refused, left waiting for a handshake"));
        assert!(
            matches!(&r, Ok(0))
                || r.as_ref()
                    .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset),
            "peer {i}: {r:?}"
        );
    }
    let ep = common::quinn_client(&cert.0);
    let e = tokio::time::timeout(
        Duration::from_secs(5),
        ep.connect(addr, "127.0.0.1").unwrap(),
    )
    .await
    .expect("refused at once")
    .expect_err("refused");
    assert!(
        matches!(e, quinn::ConnectionError::ConnectionClosed(ref c) if c.error_code == quinn::TransportErrorCode::CONNECTION_REFUSED),
        "{e}"
    );
    assert!(
        tokio::time::timeout(Duration::from_millis(300), l.next_event())
            .await
            .is_err(),
        "the application sees nothing of the refused peers"
    );
}

/// The server's one byte (a byte stream without a framer: a part).
async fn read_one(c: &Connection) {
    let r = tokio::time::timeout(Duration::from_secs(5), c.receive_with(Some(1), Some(1)))
        .await
        .expect("a byte within 5 s")
        .expect("received");
    assert_eq!(r.data(), b"x");
}

/// How the server's next handshake went.
async fn next(
    kinds: &mut tokio::sync::mpsc::UnboundedReceiver<Option<rustls::HandshakeKind>>,
) -> Option<rustls::HandshakeKind> {
    tokio::time::timeout(Duration::from_secs(5), kinds.recv())
        .await
        .expect("a handshake")
        .expect("the server runs")
}

/// A Clone's TLS sessions are its Connection's: under isolateSession it
/// resumes none (a Clone used the process-wide cache before, so the second
/// isolated Connection's Clone resumed the first one's session, letting
/// the server link the two); in a TransportContext it resumes that
/// context's. Checked by a plain tokio-rustls server that reports how each
/// handshake went.
#[tokio::test]
async fn a_clone_keeps_its_connection_s_session_scope() {
    use rustls::HandshakeKind;
    let cert = common::self_signed();
    let config = common::rustls_server_config(&cert.pem, &cert.key);
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let (tx, mut kinds) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let (acceptor, tx) = (acceptor.clone(), tx.clone());
            tokio::spawn(async move {
                use tokio::io::AsyncReadExt;
                let Ok(mut tls) = acceptor.accept(s).await else {
                    return;
                };
                let _ = tx.send(tls.get_ref().1.handshake_kind());
                // A byte to read, so that the client takes in the session
                // tickets sent before it.
                use tokio::io::AsyncWriteExt;
                let _ = tls.write_all(b"x").await;
                let mut b = [0u8; 64];
                while matches!(tls.read(&mut b).await, Ok(n) if n > 0) {}
            });
        }
    });
    let pre = |isolated: bool, ctx: &postsocket::TransportContext| {
        let mut props = TransportProperties::new();
        props.set("isolateSession", isolated).unwrap();
        let mut p = Preconnection::new(
            vec![],
            vec![common::remote(addr)],
            props,
            common::pinned(&cert),
        );
        p.set_protocols(vec![StackId::Tls]);
        p.set_transport_context(ctx.clone());
        p
    };
    let ctx = postsocket::TransportContext::new();
    let mut kept = Vec::new();
    for round in 0..2 {
        let c = pre(true, &ctx).initiate().await.unwrap();
        assert_eq!(
            next(&mut kinds).await,
            Some(HandshakeKind::Full),
            "round {round}"
        );
        read_one(&c).await;
        let clone = c.clone_in_group(None, None).await.unwrap();
        assert_eq!(
            next(&mut kinds).await,
            Some(HandshakeKind::Full),
            "round {round}: the Clone of an isolated Connection resumed a session"
        );
        read_one(&clone).await;
        kept.push((c, clone));
    }
    // In a context, the Clone resumes the session its Connection made
    // (the server resumes sessions at all).
    let c = pre(false, &ctx).initiate().await.unwrap();
    assert_eq!(next(&mut kinds).await, Some(HandshakeKind::Full));
    read_one(&c).await;
    let _clone = c.clone_in_group(None, None).await.unwrap();
    assert_eq!(next(&mut kinds).await, Some(HandshakeKind::Resumed));
}
