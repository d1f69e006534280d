//! WebRTC data channels between two native str0m peers over loopback UDP:
//! Rendezvous over an in-process signaling channel and over HTTP signaling
//! (`HttpSignaling` against a server that mounts `Preconnection::answer_offer`),
//! echo, Clone as a second channel on the same peer connection, channel
//! options from the properties, and bad signaling input.

#![cfg(not(all(target_arch = "wasm32", target_os = "unknown")))]

use postsocket::{
    Connection, ErrorReason, HttpSignaling, Preconnection, PropertyValue, RendezvousDone,
    SecurityParameters, SignalingMessage, StackId, TransportProperties,
};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const T: Duration = Duration::from_secs(15);

#[path = "common/pipe.rs"]
mod pipe;
use pipe::pipes;

fn pre(props: TransportProperties) -> Preconnection {
    Preconnection::new(vec![], vec![], props, SecurityParameters::new())
}

/// Echo every message of `c` until it ends.
fn echo(c: Connection) {
    tokio::spawn(async move {
        while let Ok(m) = c.receive().await {
            if c.send_message(m.data().to_vec()).await.is_err() {
                break;
            }
        }
    });
}

/// Echo the first Connection and every channel the peer opens later.
fn echo_all(done: RendezvousDone) {
    echo(done.connection);
    let listener = done.listener;
    tokio::spawn(async move {
        while let Ok(c) = listener.accept().await {
            echo(c);
        }
    });
}

async fn roundtrip(c: &Connection, msg: &[u8]) {
    c.send_message(msg.to_vec()).await.expect("sent");
    let r = tokio::time::timeout(T, c.receive())
        .await
        .expect("echo in time")
        .expect("received");
    assert_eq!(r.data(), msg);
}

async fn pair(props: TransportProperties) -> Connection {
    let (a, b) = pipes();
    let answerer = tokio::spawn(pre(TransportProperties::new()).rendezvous(b));
    let offer = tokio::time::timeout(T, pre(props).rendezvous(a))
        .await
        .expect("in time")
        .expect("offerer RendezvousDone");
    let done = answerer.await.unwrap().expect("answerer RendezvousDone");
    echo_all(done);
    offer.connection
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_channel_echo_and_clone() {
    let c = pair(TransportProperties::new()).await;
    assert_eq!(c.stack(), StackId::Webrtc);
    assert_eq!(c.get("webrtc.ordered").unwrap(), PropertyValue::Bool(true));
    assert!(c.remote_addr().unwrap().ip().is_loopback());
    for i in 0..20u32 {
        roundtrip(&c, format!("message {i}").as_bytes()).await;
    }
    // Boundaries are kept: a 60 KB and a 250 KB message come back whole.
    roundtrip(&c, &vec![7u8; 60_000]).await;
    let big: Vec<u8> = (0..250_000u32).map(|i| (i % 251) as u8).collect();
    roundtrip(&c, &big).await;
    // Backpressure: 16 messages of 100 KB (1.6 MB, over the 1 MiB send buffer) all arrive.
    let chunk = vec![1u8; 100_000];
    let sender = {
        let c2 = c
            .clone_in_group(None, None)
            .await
            .expect("clone for the bulk test");
        let chunk = chunk.clone();
        tokio::spawn(async move {
            for _ in 0..16 {
                c2.send_message(chunk.clone()).await.expect("bulk send");
            }
            let mut got = 0;
            while got < 16 {
                let r = tokio::time::timeout(T, c2.receive())
                    .await
                    .expect("bulk echo in time");
                assert_eq!(r.expect("bulk receive").data().len(), chunk.len());
                got += 1;
            }
            c2
        })
    };
    let c_bulk = sender.await.unwrap();
    c_bulk.close().await.unwrap();

    // Clone: a second channel on the same peer connection (same UDP 4-tuple).
    let c2 = tokio::time::timeout(T, c.clone_in_group(None, None))
        .await
        .expect("clone in time")
        .expect("clone");
    assert_eq!(c2.remote_addr(), c.remote_addr());
    assert_eq!(c2.local_addr(), c.local_addr());
    assert!(c.grouped_connections().len() >= 2);
    roundtrip(&c2, b"on the second channel").await;
    roundtrip(&c, b"first still works").await;
    c2.close().await.unwrap();
    roundtrip(&c, b"first after the clone closed").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unordered_unreliable_channel() {
    let mut props = TransportProperties::new();
    props.set("msgReliable", false).unwrap();
    props.set("msgOrdered", false).unwrap();
    let c = pair(props).await;
    assert_eq!(c.get("webrtc.ordered").unwrap(), PropertyValue::Bool(false));
    assert_eq!(
        c.get("webrtc.maxRetransmits").unwrap(),
        PropertyValue::Integer(0)
    );
    // Loopback loses nothing: the unreliable channel still echoes.
    roundtrip(&c, b"unordered").await;
    // A Message cannot ask for more than the channel was created with.
    for prop in ["msgReliable", "msgOrdered"] {
        let ctx = postsocket::MessageContext::new().with(prop, true).unwrap();
        match c.send(b"x".to_vec(), Some(ctx), true).await {
            Err(postsocket::SendFailure::SendError { error, .. }) => {
                assert_eq!(
                    error.reason,
                    ErrorReason::InvalidMessageProperties,
                    "{error}"
                );
                assert!(
                    error.message.contains("fixed when the channel opens"),
                    "{error}"
                );
            }
            other => panic!("{prop} true on an unreliable unordered channel: {other:?}"),
        }
    }

    let mut props = TransportProperties::new();
    props.set("msgReliable", false).unwrap();
    props
        .set("msgLifetime", Duration::from_millis(500))
        .unwrap();
    let c = pair(props).await;
    assert_eq!(
        c.get("webrtc.maxPacketLifeTime").unwrap(),
        PropertyValue::Integer(500)
    );
    roundtrip(&c, b"with a lifetime").await;
}

/// A tiny HTTP server: POST /offer → `answer_offer` → the answer as JSON.
async fn signaling_server() -> (String, tokio::task::JoinHandle<()>) {
    signaling_server_over(None).await
}

/// The same over TLS (`https://`) with `tls` (tokio-rustls, not postsocket),
/// or over plain TCP.
async fn signaling_server_over(
    tls: Option<tokio_rustls::TlsAcceptor>,
) -> (String, tokio::task::JoinHandle<()>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let scheme = if tls.is_some() { "https" } else { "http" };
    let url = format!("{scheme}://{}/offer", l.local_addr().unwrap());
    let h = tokio::spawn(async move {
        loop {
            let Ok((s, _)) = l.accept().await else {
                return;
            };
            match &tls {
                None => answer_one(s).await,
                // A client that refuses the certificate ends the handshake.
                Some(tls) => {
                    if let Ok(s) = tls.accept(s).await {
                        answer_one(s).await
                    }
                }
            }
        }
    });
    (url, h)
}

/// Read one POST /offer from `s` and answer it.
async fn answer_one(mut s: impl tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let (head, len) = loop {
        let n = s.read(&mut chunk).await.unwrap();
        assert!(n > 0);
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..i]).to_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .unwrap()
                .trim()
                .parse()
                .unwrap();
            break (i + 4, len);
        }
    };
    while buf.len() < head + len {
        let n = s.read(&mut chunk).await.unwrap();
        assert!(n > 0);
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = String::from_utf8(buf[head..head + len].to_vec()).unwrap();
    let (status, reply) = match SignalingMessage::from_json(&body) {
        Ok(SignalingMessage::Offer { sdp }) => {
            match pre(TransportProperties::new()).answer_offer(&sdp).await {
                Ok((answer, pending)) => {
                    tokio::spawn(async move {
                        if let Ok(done) = pending.done().await {
                            echo_all(done);
                        }
                    });
                    ("200 OK", SignalingMessage::Answer { sdp: answer }.to_json())
                }
                Err(e) => ("400 Bad Request", e.to_string()),
            }
        }
        Ok(_) => ("400 Bad Request", "not an offer".into()),
        Err(e) => ("400 Bad Request", e.to_string()),
    };
    let resp = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{reply}",
        reply.len()
    );
    let _ = s.write_all(resp.as_bytes()).await;
    let _ = s.shutdown().await;
}

/// A TLS acceptor (tokio-rustls) for a new self-signed certificate for
/// 127.0.0.1, and the certificate's PEM.
fn tls_acceptor() -> (tokio_rustls::TlsAcceptor, String) {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
    let pem = ck.cert.pem();
    let certs = vec![CertificateDer::from_pem_slice(pem.as_bytes()).unwrap()];
    let key = PrivateKeyDer::from_pem_slice(ck.signing_key.serialize_pem().as_bytes()).unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    (
        tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config)),
        pem,
    )
}

/// Natively, `https://` signaling verifies its server: pinned, the
/// rendezvous completes; with the default trust (system roots) a
/// self-signed server is refused, saying why; with security disabled an
/// `https://` URL is an InvalidConfiguration.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_signaling_verifies_its_server() {
    let (tls, pem) = tls_acceptor();
    let (url, _server) = signaling_server_over(Some(tls)).await;
    let mut pinned = SecurityParameters::new();
    pinned.pinned_server_certificate =
        vec![postsocket::security::certificate_sha256(&pem).unwrap()];
    let done = tokio::time::timeout(
        T,
        pre(TransportProperties::new())
            .rendezvous(HttpSignaling::new(url.clone()).with_security(pinned)),
    )
    .await
    .expect("in time")
    .expect("RendezvousDone over https signaling");
    roundtrip(&done.connection, b"over HTTPS signaling").await;

    let e = pre(TransportProperties::new())
        .rendezvous(HttpSignaling::new(url.clone()))
        .await
        .unwrap_err();
    assert_eq!(e.reason, ErrorReason::EstablishmentFailed, "{e}");
    assert!(
        e.message
            .contains("TLS handshake with the signaling server 127.0.0.1"),
        "{e}"
    );
    assert!(e.message.to_lowercase().contains("certificate"), "{e}");

    let e = pre(TransportProperties::new())
        .rendezvous(HttpSignaling::new(url).with_security(SecurityParameters::disabled()))
        .await
        .unwrap_err();
    assert_eq!(e.reason, ErrorReason::InvalidConfiguration, "{e}");
    assert!(e.message.contains("security disabled"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_signaling_echo() {
    let (url, _server) = signaling_server().await;
    let done = tokio::time::timeout(
        T,
        pre(TransportProperties::new()).rendezvous(HttpSignaling::new(url)),
    )
    .await
    .expect("in time")
    .expect("RendezvousDone");
    roundtrip(&done.connection, b"over HTTP signaling").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_signaling_fails_with_reasons() {
    // A malformed offer.
    let e = pre(TransportProperties::new())
        .answer_offer("this is not SDP")
        .await
        .unwrap_err();
    assert_eq!(e.reason, ErrorReason::EstablishmentFailed);
    assert!(e.message.contains("SDP offer"), "{e}");

    // A signaling URL with no server.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let e = pre(TransportProperties::new())
        .rendezvous(HttpSignaling::new(format!("http://127.0.0.1:{port}/offer")))
        .await
        .unwrap_err();
    assert_eq!(e.reason, ErrorReason::EstablishmentFailed);
    assert!(e.message.contains("signaling POST"), "{e}");

    // Disabled security cannot run DTLS.
    let p = Preconnection::new(
        vec![],
        vec![],
        TransportProperties::new(),
        SecurityParameters::disabled(),
    );
    let (a, _b) = pipes();
    let e = p.rendezvous(a).await.unwrap_err();
    assert_eq!(e.reason, ErrorReason::NoCandidates, "{e}");

    // set_protocols without webrtc.
    let mut p = pre(TransportProperties::new());
    p.set_protocols(vec![StackId::Tcp]);
    let (a, _b) = pipes();
    let e = p.rendezvous(a).await.unwrap_err();
    assert_eq!(e.reason, ErrorReason::NoCandidates, "{e}");

    // A pin (or trust roots, identities) cannot apply to WebRTC's DTLS,
    // whose peer is known by the fingerprint in the signaled SDP: refused,
    // naming them, rather than ignored (a rendezvous with a pin that
    // matched nothing went ahead before).
    let mut sec = SecurityParameters::new();
    sec.pinned_server_certificate = vec![[0u8; 32]];
    sec.trusted_ca = vec!["(a CA's PEM)".into()];
    let p = Preconnection::new(vec![], vec![], TransportProperties::new(), sec);
    let (a, _b) = pipes();
    let e = p.rendezvous(a).await.unwrap_err();
    assert_eq!(e.reason, ErrorReason::InvalidConfiguration, "{e}");
    assert!(
        e.message.contains("pinned_server_certificate, trusted_ca"),
        "{e}"
    );
}

/// A rendezvoused pair whose answering end is handed to the test (not echoed).
async fn raw_pair() -> (Connection, Connection) {
    let (offer, done) = tokio::time::timeout(T, pipe::pair())
        .await
        .expect("in time");
    (offer.connection, done.connection)
}

/// Read Messages until the channel ends; their total size and count, and
/// whether each carried its index (Message `i` is `i as u8` repeated).
async fn read_all(c: Connection) -> (usize, usize, bool) {
    let (mut bytes, mut n, mut in_order) = (0, 0, true);
    while let Ok(Ok(m)) = tokio::time::timeout(T, c.receive()).await {
        in_order &= m.data().iter().all(|b| *b == n as u8);
        bytes += m.data().len();
        n += 1;
    }
    (bytes, n, in_order)
}

/// Send 4.5 MiB to a receiver that starts reading only once all of it is
/// Sent (by then its queue is full, and the last Messages Sent wait in the
/// sender's SCTP, unacknowledged), then end the sender (`close` first, or
/// just drop it): every Message Sent arrives, in order.
async fn everything_sent_arrives(close_first: bool) {
    let (a, b) = raw_pair().await;
    let (go, gate) = tokio::sync::oneshot::channel::<()>();
    let reader = tokio::spawn(async move {
        let _ = gate.await;
        read_all(b).await
    });
    let (count, len) = (72usize, 64 * 1024); // over the receiver's queue
    for i in 0..count {
        a.send_message(vec![i as u8; len]).await.expect("Sent");
    }
    go.send(()).unwrap();
    if close_first {
        tokio::time::timeout(T, a.close())
            .await
            .expect("close in time")
            .expect("close");
    }
    drop(a);
    let (bytes, n, in_order) = reader.await.unwrap();
    assert_eq!(
        (bytes, n),
        (count * len, count),
        "every Message Sent arrived"
    );
    assert!(in_order);
}

/// Close, then drop every handle: what SCTP still held is delivered first
/// (the channel closes once its data is acknowledged), not thrown away with
/// the peer connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_then_drop_delivers_everything_sent() {
    everything_sent_arrives(true).await;
}

/// Dropping the last handle without Close: the driver still delivers what
/// SCTP holds (for at most `DRAIN_MAX`) before it closes the peer connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_last_handle_delivers_everything_sent() {
    everything_sent_arrives(false).await;
}

/// A receiver that does not read pushes back on the sender: what waits for
/// it is bounded, so the sender's sends stall instead of the receiver's
/// memory growing; once it reads, everything arrives, in order.
///
/// Once the receiver reads, one acknowledgement lets the sender's SCTP send
/// a whole window, which an unoptimised build takes about a second to
/// encrypt: this test also fails when the sender's driver does not read
/// ahead meanwhile (it lost the peer's STUN until "ICE disconnected", in
/// about half the runs beside this file's other tests).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_does_not_read_pushes_back_on_the_sender() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let (a, b) = raw_pair().await;
    let (count, len) = (384usize, 64 * 1024); // 24 MiB, several times the bounds
    let sent = std::sync::Arc::new(AtomicUsize::new(0));
    let progress = sent.clone();
    let sender = tokio::spawn(async move {
        for i in 0..count {
            a.send_message(vec![i as u8; len]).await.expect("Sent");
            progress.fetch_add(1, Ordering::SeqCst);
        }
        a
    });
    // Wait until the sender stalls (no send completes for 2 s), or it is done.
    let mut last = (0, std::time::Instant::now());
    for _ in 0..600 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = sent.load(Ordering::SeqCst);
        if now == count || (now == last.0 && last.1.elapsed() > Duration::from_secs(2)) {
            break;
        }
        if now != last.0 {
            last = (now, std::time::Instant::now());
        }
    }
    let stalled_at = sent.load(Ordering::SeqCst);
    assert!(
        stalled_at < count / 2,
        "{stalled_at} of {count} Messages Sent to a receiver that reads nothing"
    );
    let reader = tokio::spawn(read_all(b));
    let a = tokio::time::timeout(Duration::from_secs(120), sender)
        .await
        .expect("the sender finishes once the receiver reads")
        .unwrap();
    a.close().await.unwrap();
    drop(a);
    let (bytes, n, in_order) = reader.await.unwrap();
    assert_eq!((bytes, n), (count * len, count));
    assert!(in_order);
}
