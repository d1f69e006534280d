//! Shared helpers for the loopback integration tests.
#![allow(dead_code)]

use postsocket::framer::{DelimiterFramer, LengthPrefixFramer};
use postsocket::{
    Connection, LocalEndpoint, Preconnection, RemoteEndpoint, SecurityParameters,
    TransportProperties,
};
use socket2::{Domain, Socket, Type};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

/// A TCP port on `[::1]` that silently drops SYNs (listen backlog full), and
/// the filler connection that fills it. Keep both alive for the test.
pub struct Blackhole {
    pub addr: SocketAddr,
    _listener: Socket,
    _filler: Vec<TcpStream>,
}

/// Blackhole `ip` on an ephemeral port, or on `port` if given.
pub fn blackhole(ip: &str, port: u16) -> std::io::Result<Blackhole> {
    let addr: SocketAddr = SocketAddr::new(ip.parse().unwrap(), port);
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.bind(&addr.into())?;
    s.listen(0)?;
    let addr = s.local_addr()?.as_socket().unwrap();
    let mut filler = Vec::new();
    // Fill the accept queue: with backlog 0 Linux queues one connection.
    for _ in 0..2 {
        match TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            Ok(c) => filler.push(c),
            Err(_) => break,
        }
    }
    Ok(Blackhole {
        addr,
        _listener: s,
        _filler: filler,
    })
}

/// A plain TCP echo server (tokio) on `addr` echoing bytes.
pub async fn tcp_echo_server(addr: SocketAddr) -> std::io::Result<SocketAddr> {
    let l = tokio::net::TcpListener::bind(addr).await?;
    let local = l.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    Ok(local)
}

/// An IPv6 blackhole and an IPv4 echo server on the same port number.
pub async fn blackhole_v6_serving_v4() -> (Blackhole, SocketAddr) {
    for _ in 0..20 {
        let bh = blackhole("::1", 0).expect("blackhole on ::1");
        let port = bh.addr.port();
        if let Ok(v4) = tcp_echo_server(format!("127.0.0.1:{port}").parse().unwrap()).await {
            return (bh, v4);
        }
    }
    panic!("no port free on both ::1 and 127.0.0.1");
}

/// A free port number on 127.0.0.1 (nothing listens there afterwards: connects are refused).
pub fn refused_port(ip: &str) -> SocketAddr {
    let l = TcpListener::bind(format!("{ip}:0").replace("::1:0", "[::1]:0")).unwrap();
    l.local_addr().unwrap()
}

pub fn remote(addr: SocketAddr) -> RemoteEndpoint {
    RemoteEndpoint::new().with_socket_addr(addr).unwrap()
}

pub fn local(addr: &str) -> LocalEndpoint {
    LocalEndpoint::new()
        .with_socket_addr(addr.parse().unwrap())
        .unwrap()
}

/// A plaintext TCP preconnection with a line framer.
pub fn tcp_lines(remotes: Vec<RemoteEndpoint>) -> Preconnection {
    let mut p = Preconnection::new(
        vec![],
        remotes,
        TransportProperties::new(),
        SecurityParameters::disabled(),
    );
    p.add_framer(DelimiterFramer::line());
    p
}

/// A plaintext TCP preconnection with a length-prefix framer.
pub fn tcp_length(remotes: Vec<RemoteEndpoint>) -> Preconnection {
    let mut p = Preconnection::new(
        vec![],
        remotes,
        TransportProperties::new(),
        SecurityParameters::disabled(),
    );
    p.add_framer(LengthPrefixFramer::new());
    p
}

/// A Listener preconnection on 127.0.0.1:0.
pub fn listener_pre(props: TransportProperties) -> Preconnection {
    Preconnection::new(
        vec![local("127.0.0.1:0")],
        vec![],
        props,
        SecurityParameters::disabled(),
    )
}

/// Echo every Message on a Connection until it ends.
pub fn spawn_echo(conn: Connection) {
    tokio::spawn(async move {
        while let Ok(m) = conn.receive().await {
            if conn.send(m.into_data(), None, true).await.is_err() {
                break;
            }
        }
    });
}

pub fn t_of(trace: &postsocket::RacingTrace, kind: postsocket::TraceEventKind, id: &str) -> f64 {
    trace
        .find(kind, id)
        .unwrap_or_else(|| panic!("no {kind:?} for {id} in\n{}", trace.timeline()))
        .t_ms
}

/// A self-signed certificate for localhost and 127.0.0.1, as PEM.
pub struct Cert {
    pub pem: String,
    pub key: String,
}

pub fn self_signed() -> Cert {
    let ck =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    Cert {
        pem: ck.cert.pem(),
        key: ck.signing_key.serialize_pem(),
    }
}

/// `s` with `c` as the server certificate.
pub fn with_certificate(
    mut s: postsocket::SecurityParameters,
    c: &Cert,
) -> postsocket::SecurityParameters {
    s.server_certificate = vec![postsocket::security::Identity::from_pem(&c.pem, &c.key).unwrap()];
    s
}

/// Secure parameters that trust exactly `c` (a pin).
pub fn pinned(c: &Cert) -> postsocket::SecurityParameters {
    let mut s = postsocket::SecurityParameters::new();
    s.pinned_server_certificate = vec![postsocket::security::certificate_sha256(&c.pem).unwrap()];
    s
}

/// The server side of a secure test: `c` as its certificate, security required.
pub fn server_security(c: &Cert) -> postsocket::SecurityParameters {
    with_certificate(postsocket::SecurityParameters::new(), c)
}

/// A length-prefixed Listener preconnection on 127.0.0.1:0 for `stacks`.
pub fn framed_listener_pre(
    sec: postsocket::SecurityParameters,
    stacks: Vec<postsocket::StackId>,
) -> Preconnection {
    let mut pre = Preconnection::new(
        vec![local("127.0.0.1:0")],
        vec![],
        TransportProperties::new(),
        sec,
    );
    pre.add_framer(LengthPrefixFramer::new());
    pre.set_protocols(stacks);
    pre
}

/// The Connections `l` receives, handed to the test through a channel. An
/// EstablishmentError panics the accepting task when `strict`, else it is
/// printed (tests that make handshakes fail on purpose).
pub fn received_connections(
    l: postsocket::Listener,
    strict: bool,
) -> tokio::sync::mpsc::UnboundedReceiver<Connection> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            match l.next_event().await {
                postsocket::ListenerEvent::ConnectionReceived(conn) => {
                    if tx.send(conn).is_err() {
                        return;
                    }
                }
                postsocket::ListenerEvent::EstablishmentError(e) if strict => {
                    panic!("listener: {e}")
                }
                postsocket::ListenerEvent::EstablishmentError(e) => eprintln!("listener: {e}"),
                postsocket::ListenerEvent::Stopped => return,
            }
        }
    });
    rx
}

/// A Listener's events on two channels: its Connections, and the text of
/// each EstablishmentError (until it stops).
#[allow(dead_code)] // not every test file uses it
pub fn listener_events(
    l: postsocket::Listener,
) -> (
    tokio::sync::mpsc::UnboundedReceiver<Connection>,
    tokio::sync::mpsc::UnboundedReceiver<String>,
) {
    let (conns_tx, conns) = tokio::sync::mpsc::unbounded_channel();
    let (errors_tx, errors) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            match l.next_event().await {
                postsocket::ListenerEvent::ConnectionReceived(c) => {
                    let _ = conns_tx.send(c);
                }
                postsocket::ListenerEvent::EstablishmentError(e) => {
                    let _ = errors_tx.send(e.to_string());
                }
                postsocket::ListenerEvent::Stopped => return,
            }
        }
    });
    (conns, errors)
}

/// The next Message's data, within 5 s.
pub async fn recv(c: &Connection) -> Vec<u8> {
    tokio::time::timeout(Duration::from_secs(5), c.receive())
        .await
        .expect("a message within 5 s")
        .expect("received")
        .into_data()
        .into()
}

/// A client Preconnection to `addr` that races only `stack`.
pub fn client(
    addr: SocketAddr,
    stack: postsocket::StackId,
    props: TransportProperties,
    sec: postsocket::SecurityParameters,
) -> Preconnection {
    let remote = RemoteEndpoint::new().with_socket_addr(addr).unwrap();
    let mut pre = Preconnection::new(vec![], vec![remote], props, sec);
    pre.set_protocols(vec![stack]);
    pre
}

/// A plain rustls (not postsocket) TLS 1.3 server configuration with the
/// certificate `cert_pem` and its key (sessions resume: rustls's defaults).
pub fn rustls_server_config(cert_pem: &str, key_pem: &str) -> rustls::ServerConfig {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = vec![CertificateDer::from_pem_slice(cert_pem.as_bytes()).unwrap()];
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap()
}

/// A plain quinn (not postsocket) server endpoint on 127.0.0.1 with the
/// certificate `cert_pem` and its key, speaking postsocket's ALPN (`taps`).
pub fn quinn_server(cert_pem: &str, key_pem: &str) -> quinn::Endpoint {
    let mut tls = rustls_server_config(cert_pem, key_pem);
    tls.alpn_protocols = vec![b"taps".to_vec()];
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls).unwrap();
    let config = quinn::ServerConfig::with_crypto(std::sync::Arc::new(crypto));
    quinn::Endpoint::server(config, "127.0.0.1:0".parse().unwrap()).unwrap()
}

/// A plain quinn client endpoint on 127.0.0.1 that trusts `cert_pem` and
/// speaks postsocket's ALPN (`taps`).
pub fn quinn_client(cert_pem: &str) -> quinn::Endpoint {
    quinn_client_with_alpn(cert_pem, b"taps")
}

/// A plain rustls TLS 1.3 client configuration that trusts `cert_pem`
/// alone and offers no ALPN.
pub fn rustls_client_config(cert_pem: &str) -> rustls::ClientConfig {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from_pem_slice(cert_pem.as_bytes()).unwrap())
        .unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth()
}

/// [`quinn_client`] offering `alpn` (`h3`: a plain WebTransport client).
pub fn quinn_client_with_alpn(cert_pem: &str, alpn: &[u8]) -> quinn::Endpoint {
    let mut tls = rustls_client_config(cert_pem);
    tls.alpn_protocols = vec![alpn.to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
    let mut ep = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    ep.set_default_client_config(quinn::ClientConfig::new(std::sync::Arc::new(crypto)));
    ep
}

/// The first error of type `T` in `e`'s source chain (`e` itself excluded).
pub fn in_source_chain<T: std::error::Error + 'static>(e: &dyn std::error::Error) -> Option<&T> {
    let mut next = e.source();
    while let Some(s) = next {
        if let Some(t) = s.downcast_ref::<T>() {
            return Some(t);
        }
        next = s.source();
    }
    None
}
