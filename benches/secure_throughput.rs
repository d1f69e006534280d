//! Secure throughput: postsocket QUIC and TLS against raw quinn and raw
//! tokio-rustls, side by side.
//!
//! `cargo bench --bench secure_throughput` (harness = false: a plain `main`).
//!
//! A client sends N Messages one way to a loopback server that receives them
//! all; time runs from the first send until the server has the last byte.
//! Both sides send one payload buffer over and over (postsocket as a shared
//! `Bytes`, so neither side copies it per message) and use the same framing
//! (4-byte big-endian length, then the body):
//! postsocket's `LengthPrefixFramer` against hand-written framing on the raw
//! stacks. The certificate is one rcgen self-signed certificate for
//! localhost; postsocket pins it, the raw clients trust it through a root
//! store. All TLS is rustls with the ring provider, TLS 1.3 and ALPN `taps`
//! (postsocket's defaults).
//!
//! - QUIC: postsocket `set_protocols([Quic])` (a Connection is one
//!   bidirectional stream; the Listener is restricted to QUIC) against raw
//!   quinn with one bidirectional stream and the default transport config on
//!   both ends, as postsocket uses. Per message the raw client calls
//!   `SendStream::write_all` twice (header, then body): postsocket's QUIC
//!   stack hands quinn the framer's header and body slices with one `write`
//!   each, so both sides make the same quinn calls. The raw server reads with
//!   `RecvStream::read_exact` (header, then body).
//! - TLS: postsocket `set_protocols([Tls])` against tokio-rustls
//!   `TlsConnector`/`TlsAcceptor` over a tokio `TcpStream` (TCP_NODELAY on
//!   both). Per message the raw client does one vectored write of header and
//!   body (looping over short writes), then `flush`, exactly what postsocket's
//!   TLS stack does with the framer's slices: rustls packs both slices into
//!   the same records and writes them to the socket before returning, so
//!   both sides make the same number of syscalls per message. The raw server
//!   reads through a 64 KiB `BufReader` with `read_exact`.
//!   `RAW_COMBINED=1` makes the raw clients (QUIC and TLS) copy header and
//!   body into one buffer and write that instead.
//!
//! Each case runs 15 times, alternating which side goes first; each run is
//! paired with the other side's run next to it, and the median of the pairs'
//! ratios counts (the MB/s columns are each side's median run). Handshakes are not timed.
//!
//! For profiling: `BENCH_ONLY=quic|tls` and `BENCH_SIZE=1024|65536` pick
//! cases, `BENCH_SIDE=ps|raw` runs one side, `BENCH_SCALE=F` scales the counts.
//! `BENCH_CLIENT=ps|raw` or `BENCH_SERVER=ps|raw` puts the same sender (or
//! receiver) under both columns, to see which end costs more.
//! `BENCH_RUNS=N` sets the runs per case (default 9) and `BENCH_WORKERS=N`
//! the tokio worker threads (default 2; the sender runs on the main thread);
//! `BENCH_VERBOSE=1` prints every run.
// Native only (sockets, tokio); on wasm32 this bench is empty.
#![cfg_attr(all(target_arch = "wasm32", target_os = "unknown"), no_main)]
#![cfg(not(all(target_arch = "wasm32", target_os = "unknown")))]

mod common;

use common::{runs, verdict, Paired};
use postsocket::framer::LengthPrefixFramer;
use postsocket::security::{certificate_sha256, Identity};
use postsocket::{
    LocalEndpoint, Preconnection, RemoteEndpoint, SecurityParameters, StackId, TransportProperties,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use std::io::IoSlice;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Proto {
    Quic,
    Tls,
}

impl Proto {
    fn name(self) -> &'static str {
        match self {
            Proto::Quic => "QUIC",
            Proto::Tls => "TLS",
        }
    }
    fn stack(self) -> StackId {
        match self {
            Proto::Quic => StackId::Quic,
            Proto::Tls => StackId::Tls,
        }
    }
}

struct Case {
    proto: Proto,
    name: &'static str,
    size: usize,
    count: usize,
    /// postsocket/raw throughput ratio to meet.
    target: f64,
}

const CASES: [Case; 4] = [
    Case {
        proto: Proto::Quic,
        name: "64 KiB",
        size: 64 * 1024,
        count: 8192,
        target: 0.95,
    },
    Case {
        proto: Proto::Quic,
        name: "1 KiB",
        size: 1024,
        count: 200_000,
        target: 0.95,
    },
    Case {
        proto: Proto::Tls,
        name: "64 KiB",
        size: 64 * 1024,
        count: 16_384,
        target: 0.95,
    },
    Case {
        proto: Proto::Tls,
        name: "1 KiB",
        size: 1024,
        count: 100_000,
        target: 0.95,
    },
];

/// Scale every count by `BENCH_SCALE` (e.g. 0.1 for a quick look, 4 for profiling).
fn count(case: &Case) -> usize {
    let scale: f64 = std::env::var("BENCH_SCALE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1.0);
    ((case.count as f64 * scale) as usize).max(1)
}

fn raw_combined() -> bool {
    std::env::var_os("RAW_COMBINED").is_some()
}

/// The self-signed certificate both sides use.
struct Cert {
    pem: String,
    key_pem: String,
    der: CertificateDer<'static>,
    key_der: Vec<u8>,
}

fn self_signed() -> Cert {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
        .expect("rcgen");
    Cert {
        pem: ck.cert.pem(),
        key_pem: ck.signing_key.serialize_pem(),
        der: ck.cert.der().clone(),
        key_der: ck.signing_key.serialize_der(),
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(
            std::env::var("BENCH_WORKERS")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(2),
        )
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(run());
}

fn localhost(port: u16) -> SocketAddr {
    SocketAddr::new(Ipv4Addr::LOCALHOST.into(), port)
}

// ---------------------------------------------------------------- postsocket

fn ps_listener_pre(proto: Proto, cert: &Cert) -> Preconnection {
    let mut sec = SecurityParameters::new();
    sec.server_certificate = vec![Identity::from_pem(&cert.pem, &cert.key_pem).expect("identity")];
    let local = LocalEndpoint::new()
        .with_socket_addr(localhost(0))
        .expect("local endpoint");
    let mut pre = Preconnection::new(vec![local], vec![], TransportProperties::new(), sec);
    pre.set_protocols(vec![proto.stack()]);
    pre.add_framer(LengthPrefixFramer::new());
    pre
}

fn ps_client_pre(proto: Proto, cert: &Cert, addr: SocketAddr) -> Preconnection {
    let mut sec = SecurityParameters::new();
    sec.pinned_server_certificate = vec![certificate_sha256(&cert.pem).expect("pin")];
    let remote = RemoteEndpoint::new()
        .with_socket_addr(addr)
        .expect("remote endpoint");
    let mut pre = Preconnection::new(vec![], vec![remote], TransportProperties::new(), sec);
    pre.set_protocols(vec![proto.stack()]);
    pre.add_framer(LengthPrefixFramer::new());
    pre
}

/// The server half of a run: its address, and a task that ends with the
/// time the last byte arrived.
type Server = (SocketAddr, tokio::task::JoinHandle<Instant>);
/// What keeps a client's connection open until the server is done.
type Keep = Box<dyn std::any::Any + Send>;

/// A postsocket Listener that receives `count` Messages of `size` bytes.
async fn ps_server(proto: Proto, cert: &Cert, size: usize, count: usize) -> Server {
    let listener = ps_listener_pre(proto, cert)
        .listen()
        .await
        .expect("postsocket listen");
    let addr = listener.local_addr();
    let server = tokio::spawn(async move {
        let conn = listener.accept().await.expect("accept");
        let mut bytes = 0usize;
        for _ in 0..count {
            let msg = conn.receive().await.expect("receive");
            assert!(msg.is_end_of_message());
            bytes += msg.data().len();
        }
        let done = Instant::now();
        assert_eq!(bytes, size * count);
        conn.abort();
        listener.stop();
        done
    });
    (addr, server)
}

/// A postsocket client that sends `count` Messages of `size` bytes; returns
/// when the last one is handed to the stack, with the time of the first send.
async fn ps_client(
    proto: Proto,
    cert: &Cert,
    addr: SocketAddr,
    size: usize,
    count: usize,
) -> (Instant, Keep) {
    let conn = ps_client_pre(proto, cert, addr)
        .initiate()
        .await
        .expect("postsocket initiate");
    assert_eq!(conn.stack(), proto.stack());
    // One shared buffer, sent again and again as the raw clients write
    // theirs: `Bytes` clones share it (a `Vec` would be copied each time).
    let payload = postsocket::Bytes::from(vec![0x5a_u8; size]);
    let start = Instant::now();
    for _ in 0..count {
        conn.send_message(payload.clone())
            .await
            .expect("postsocket send");
    }
    (start, Box::new(conn))
}

// ---------------------------------------------------------------- raw configs

/// rustls configs equivalent to postsocket's: ring provider, TLS 1.3 only, ALPN `taps`.
fn raw_tls_configs(cert: &Cert) -> (Arc<rustls::ServerConfig>, Arc<rustls::ClientConfig>) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let key = PrivateKeyDer::from(PrivatePkcs8KeyDer::from(cert.key_der.clone()));
    let mut server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("TLS 1.3")
        .with_no_client_auth()
        .with_single_cert(vec![cert.der.clone()], key)
        .expect("server cert");
    server.alpn_protocols = vec![b"taps".to_vec()];
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.der.clone()).expect("root");
    let mut client = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("TLS 1.3")
        .with_root_certificates(roots)
        .with_no_client_auth();
    client.alpn_protocols = vec![b"taps".to_vec()];
    (Arc::new(server), Arc::new(client))
}

// ---------------------------------------------------------------- raw quinn

async fn raw_quic_server(cert: &Cert, size: usize, count: usize) -> Server {
    let (server_tls, _) = raw_tls_configs(cert);
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(server_tls).expect("quic tls");
    let server_config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    let server_ep = quinn::Endpoint::server(server_config, localhost(0)).expect("quinn server");
    let addr = server_ep.local_addr().expect("addr");
    let server = tokio::spawn(async move {
        let conn = server_ep
            .accept()
            .await
            .expect("incoming")
            .await
            .expect("server handshake");
        let (_send, mut recv) = conn.accept_bi().await.expect("accept_bi");
        let mut bytes = 0usize;
        for _ in 0..count {
            let mut header = [0u8; 4];
            recv.read_exact(&mut header).await.expect("raw header");
            let len = u32::from_be_bytes(header) as usize;
            let mut body = vec![0u8; len];
            recv.read_exact(&mut body).await.expect("raw body");
            bytes += body.len();
        }
        let done = Instant::now();
        assert_eq!(bytes, size * count);
        conn.close(0u32.into(), b"done");
        done
    });
    (addr, server)
}

async fn raw_quic_client(
    cert: &Cert,
    addr: SocketAddr,
    size: usize,
    count: usize,
) -> (Instant, Keep) {
    let (_, client_tls) = raw_tls_configs(cert);
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(client_tls).expect("quic tls");
    let client_config = quinn::ClientConfig::new(Arc::new(crypto));
    let client_ep = quinn::Endpoint::client(localhost(0)).expect("quinn client");
    let conn = client_ep
        .connect_with(client_config, addr, "localhost")
        .expect("connect")
        .await
        .expect("client handshake");
    let (mut send, _recv) = conn.open_bi().await.expect("open_bi");
    let payload = vec![0x5a_u8; size];
    let combined = raw_combined();
    let start = Instant::now();
    for _ in 0..count {
        let header = (size as u32).to_be_bytes();
        if combined {
            let mut frame = Vec::with_capacity(4 + size);
            frame.extend_from_slice(&header);
            frame.extend_from_slice(&payload);
            send.write_all(&frame).await.expect("raw write");
        } else {
            send.write_all(&header).await.expect("raw write");
            send.write_all(&payload).await.expect("raw write");
        }
    }
    (start, Box::new((client_ep, conn, send)))
}

// ---------------------------------------------------------------- raw tokio-rustls

async fn raw_tls_server(cert: &Cert, size: usize, count: usize) -> Server {
    let (server_tls, _) = raw_tls_configs(cert);
    let listener = TcpListener::bind(localhost(0)).await.expect("raw bind");
    let addr = listener.local_addr().expect("raw addr");
    let acceptor = tokio_rustls::TlsAcceptor::from(server_tls);
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.expect("raw accept");
        tcp.set_nodelay(true).expect("nodelay");
        let stream = acceptor.accept(tcp).await.expect("server handshake");
        let mut rd = BufReader::with_capacity(64 * 1024, stream);
        let mut bytes = 0usize;
        for _ in 0..count {
            let mut header = [0u8; 4];
            rd.read_exact(&mut header).await.expect("raw header");
            let len = u32::from_be_bytes(header) as usize;
            let mut body = vec![0u8; len];
            rd.read_exact(&mut body).await.expect("raw body");
            bytes += body.len();
        }
        let done = Instant::now();
        assert_eq!(bytes, size * count);
        done
    });
    (addr, server)
}

async fn raw_tls_client(
    cert: &Cert,
    addr: SocketAddr,
    size: usize,
    count: usize,
) -> (Instant, Keep) {
    let (_, client_tls) = raw_tls_configs(cert);
    let tcp = TcpStream::connect(addr).await.expect("raw connect");
    tcp.set_nodelay(true).expect("nodelay");
    let connector = tokio_rustls::TlsConnector::from(client_tls);
    let name = ServerName::try_from("localhost").expect("name");
    let mut stream = connector
        .connect(name, tcp)
        .await
        .expect("client handshake");
    let payload = vec![0x5a_u8; size];
    let combined = raw_combined();
    let start = Instant::now();
    for _ in 0..count {
        let header = (size as u32).to_be_bytes();
        if combined {
            let mut frame = Vec::with_capacity(4 + size);
            frame.extend_from_slice(&header);
            frame.extend_from_slice(&payload);
            stream.write_all(&frame).await.expect("raw write");
        } else {
            write_frame(&mut stream, &header, &payload).await;
        }
        stream.flush().await.expect("raw flush");
    }
    (start, Box::new(stream))
}

/// Header and body with vectored writes (no copy into one buffer), as
/// postsocket's TLS stack hands rustls one frame; loops over short writes.
async fn write_frame<W: AsyncWriteExt + Unpin>(stream: &mut W, header: &[u8], body: &[u8]) {
    let total = header.len() + body.len();
    let mut written = 0;
    while written < total {
        let n = if written < header.len() {
            let bufs = [IoSlice::new(&header[written..]), IoSlice::new(body)];
            stream.write_vectored(&bufs).await
        } else {
            stream.write(&body[written - header.len()..]).await
        }
        .expect("raw write");
        assert!(n > 0, "raw write returned 0");
        written += n;
    }
}

// ---------------------------------------------------------------- report

/// `BENCH_SIDE=ps` or `BENCH_SIDE=raw` runs one side only (for profiling; the other side reads as 1 s).
fn side_enabled(side: &str) -> bool {
    std::env::var("BENCH_SIDE").map_or(true, |s| s == side)
}

/// Which implementation runs a side: `BENCH_CLIENT=ps|raw` or
/// `BENCH_SERVER=ps|raw` pins one side of both columns (to find which side
/// costs more); by default each column is postsocket or raw on both ends.
fn side_override(var: &str) -> Option<bool> {
    match std::env::var(var).ok()?.as_str() {
        "ps" => Some(true),
        "raw" => Some(false),
        other => panic!("{var}={other}: expected ps or raw"),
    }
}

/// One run: seconds from the first send until the server has every byte.
/// `ps` picks postsocket (true) or raw (false) for both ends, unless a side is pinned.
async fn one_run(ps: bool, proto: Proto, cert: &Cert, size: usize, count: usize) -> f64 {
    if !side_enabled(if ps { "ps" } else { "raw" }) {
        return 1.0;
    }
    let ps_server_side = side_override("BENCH_SERVER").unwrap_or(ps);
    let ps_client_side = side_override("BENCH_CLIENT").unwrap_or(ps);
    let (addr, server) = match (ps_server_side, proto) {
        (true, _) => ps_server(proto, cert, size, count).await,
        (false, Proto::Quic) => raw_quic_server(cert, size, count).await,
        (false, Proto::Tls) => raw_tls_server(cert, size, count).await,
    };
    let (start, keep) = match (ps_client_side, proto) {
        (true, _) => ps_client(proto, cert, addr, size, count).await,
        (false, Proto::Quic) => raw_quic_client(cert, addr, size, count).await,
        (false, Proto::Tls) => raw_tls_client(cert, addr, size, count).await,
    };
    let done = server.await.expect("server task");
    drop(keep);
    (done - start).as_secs_f64()
}

async fn run() {
    let started = Instant::now();
    let cert = self_signed();
    // BENCH_ONLY=quic or BENCH_ONLY=tls runs one protocol's cases; BENCH_SIZE=1024 one size.
    let only = std::env::var("BENCH_ONLY").ok();
    let only_size: Option<usize> = std::env::var("BENCH_SIZE")
        .ok()
        .and_then(|v| v.parse().ok());
    println!(
        "postsocket secure benchmark (loopback, TLS 1.3, ring, length-prefix framing, median of {} paired runs{})\n",
        runs(),
        if raw_combined() {
            ", raw: combined buffer"
        } else {
            ""
        }
    );
    println!(
        "{:<5} {:<8} {:>7} {:>10} {:>10} {:>12} {:>12} {:>8} {:>8}",
        "proto",
        "message",
        "count",
        "raw MB/s",
        "ps MB/s",
        "raw msgs/s",
        "ps msgs/s",
        "ratio",
        "target"
    );
    for case in &CASES {
        if only
            .as_deref()
            .is_some_and(|o| !o.eq_ignore_ascii_case(case.proto.name()))
            || only_size.is_some_and(|n| n != case.size)
        {
            continue;
        }
        let count = count(case);
        let mut ps = Vec::new();
        let mut raw = Vec::new();
        for i in 0..runs() {
            // Alternate which side goes first.
            if i % 2 == 0 {
                raw.push(one_run(false, case.proto, &cert, case.size, count).await);
                ps.push(one_run(true, case.proto, &cert, case.size, count).await);
            } else {
                ps.push(one_run(true, case.proto, &cert, case.size, count).await);
                raw.push(one_run(false, case.proto, &cert, case.size, count).await);
            }
        }
        let runs = Paired { raw, ps };
        runs.print_runs(case.size * count);
        let (ratio, lo, hi) = runs.ratio();
        let (raw, ps) = runs.medians();
        let bytes = (case.size * count) as f64;
        println!(
            "{:<5} {:<8} {:>7} {:>10.1} {:>10.1} {:>12.0} {:>12.0} {:>7.3}x {:>5}{:.2}x {} (pairs {lo:.2}-{hi:.2})",
            case.proto.name(),
            case.name,
            count,
            bytes / raw / 1e6,
            bytes / ps / 1e6,
            count as f64 / raw,
            count as f64 / ps,
            ratio,
            ">=",
            case.target,
            verdict(ratio >= case.target)
        );
    }
    println!(
        "\ntotal benchmark time {:.1} s",
        started.elapsed().as_secs_f64()
    );
    // Give closed connections a moment to go away before the runtime shuts down.
    tokio::time::sleep(Duration::from_millis(10)).await;
}
