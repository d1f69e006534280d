//! Hostile peers: what each flood costs a postsocket Listener, and whether it
//! keeps serving a well-behaved client meanwhile.
//!
//! `cargo bench --bench hostile` (harness = false: a plain `main`; about a
//! minute; Linux only: it reads `/proc/PID/status` and `/proc/PID/stat`).
//!
//! The Listeners run in a child process (this binary again, with
//! `HOSTILE_SERVER` set), so that their memory and CPU are measured apart
//! from the attackers': one Listener for TLS and QUIC on one port (required
//! security, a self-signed certificate, the default `ListenerLimits`), one
//! for UDP on another, each echoing every length-prefixed Message on every
//! Connection it receives. The parent runs the floods, and a well-behaved
//! client that is not postsocket (tokio-rustls, 4-byte big-endian length
//! prefix) doing 64-byte round trips, with a new connection every 100 round
//! trips, first on the quiet server (the baseline), then during each flood:
//!
//! - `tcp-silent`: `HOSTILE_CONNS` (default 2,000) TCP connections to the TLS
//!   port that send nothing, each reopened as soon as the server drops it;
//! - `tls-stalled`: as many that send a TLS record header and 10 bytes of a
//!   ClientHello, then nothing;
//! - `udp-sources`: `HOSTILE_SOURCES` (default 2,000) UDP sockets on 200
//!   loopback addresses sending a datagram every 100 ms each, never reading;
//! - `quic-initials`: genuine QUIC Initials (made with quinn-proto, each a new
//!   connection attempt) from 200 loopback addresses that never answer, at
//!   `HOSTILE_INITIALS_PER_S` (default 2,000) per second.
//!
//! Each flood lasts `HOSTILE_SECS` (default 10) seconds; `HOSTILE_ONLY`
//! (e.g. `tcp-silent,quic-initials`) picks some. Printed per flood:
//! what was sent; the Listener process's resident memory growth (the largest
//! VmRSS sampled every 50 ms, minus the one before; goal: under 64 MiB); its
//! CPU time over the flood's wall time (100% = one core); and the
//! well-behaved client's p50 and p99 round trip (and the p99 of the round
//! trips after each connection's first: `p99 rest`), its connects, and its
//! failures, against the quiet baseline (goal: p99 within 2x).
//!
//! The raw baseline, side by side in the same run: the two TCP floods are
//! also run against a plain tokio + tokio-rustls server in a child process
//! of its own (`HOSTILE_SERVER=raw`: the same certificate, TLS 1.3, the
//! same listen backlog of 1,024 as postsocket's Listener, the same echo),
//! with its own quiet baseline. It accepts every connection with no bound
//! and no handshake timeout, so it simply holds all the flood's
//! connections: no churn, but memory that grows with the attacker's
//! connection count. Before the floods, one line gives this machine's
//! round trip after an idle spell (a raw tokio TCP echo in this process,
//! after 200 ms of silence, against back to back): the well-behaved
//! client's first round trip on a connection follows its connect, which
//! under a TCP flood waits in the backlog. `HOSTILE_TRACE=FILE` appends
//! every round trip (its connection, its number in it, when, how long) to
//! FILE.

// Linux only (/proc, setrlimit, setpriority); elsewhere this bench is empty.
#![cfg_attr(not(target_os = "linux"), no_main)]
#![cfg(target_os = "linux")]

use std::io::{BufRead, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const GOAL_MIB: f64 = 64.0;
const GOAL_P99: f64 = 2.0;

fn main() {
    match std::env::var("HOSTILE_SERVER").as_deref() {
        Ok("raw") => return raw_server(),
        Ok(_) => return server(),
        Err(_) => {}
    }
    let rt = runtime();
    rt.block_on(attack());
}

// ------------------------------------------------------------ the server

/// The child: the Listeners, echoing, until stdin closes.
fn server() {
    use postsocket::framer::LengthPrefixFramer;
    use postsocket::{
        LocalEndpoint, Preconnection, SecurityParameters, StackId, TransportProperties,
    };
    let rt = runtime();
    rt.block_on(async {
        let cert = std::env::var("HOSTILE_CERT").expect("HOSTILE_CERT");
        let key = std::env::var("HOSTILE_KEY").expect("HOSTILE_KEY");
        let mut sec = SecurityParameters::new();
        sec.server_certificate =
            vec![postsocket::security::Identity::from_pem(&cert, &key).expect("the certificate")];
        let local = || {
            LocalEndpoint::new()
                .with_socket_addr("127.0.0.1:0".parse().unwrap())
                .unwrap()
        };
        let mut secure = Preconnection::new(vec![local()], vec![], TransportProperties::new(), sec);
        secure.add_framer(LengthPrefixFramer::new());
        secure.set_protocols(vec![StackId::Tls, StackId::Quic]);
        let secure = secure.listen().await.expect("the TLS and QUIC Listener");
        let udp = Preconnection::new(
            vec![local()],
            vec![],
            TransportProperties::unreliable_datagram(),
            SecurityParameters::disabled(),
        )
        .listen()
        .await
        .expect("the UDP Listener");
        println!(
            "READY {} {}",
            secure.local_addr().port(),
            udp.local_addr().port()
        );
        std::io::stdout().flush().unwrap();
        for l in [secure, udp] {
            tokio::spawn(async move {
                while let Ok(c) = l.accept().await {
                    tokio::spawn(async move {
                        while let Ok(m) = c.receive().await {
                            if c.send_message(m.into_data()).await.is_err() {
                                break;
                            }
                        }
                    });
                }
            });
        }
        until_stdin_closes().await;
    });
}

/// The raw baseline, in a child of its own: plain tokio and tokio-rustls,
/// the same certificate, TLS 1.3 and ALPN `taps`, the same listen backlog
/// as postsocket's Listener (1,024; `tokio::net::TcpListener::bind` would
/// use 128), TCP_NODELAY as postsocket sets it, and the same length-prefixed
/// echo. It accepts every connection, with no bound and no handshake
/// timeout: what a server without a Listener's limits does under a flood.
fn raw_server() {
    let rt = runtime();
    rt.block_on(async {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let cert = std::env::var("HOSTILE_CERT").expect("HOSTILE_CERT");
        let key = std::env::var("HOSTILE_KEY").expect("HOSTILE_KEY");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![CertificateDer::from_pem_slice(cert.as_bytes()).unwrap()],
                PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
            )
            .expect("the certificate");
        tls.alpn_protocols = vec![b"taps".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        let sock = socket2::Socket::new(
            socket2::Domain::IPV4,
            socket2::Type::STREAM,
            Some(socket2::Protocol::TCP),
        )
        .unwrap();
        sock.set_reuse_address(true).unwrap();
        sock.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
            .unwrap();
        sock.listen(1024).unwrap();
        sock.set_nonblocking(true).unwrap();
        let listener = tokio::net::TcpListener::from_std(sock.into()).unwrap();
        println!("READY {} 0", listener.local_addr().unwrap().port());
        std::io::stdout().flush().unwrap();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    // Out of descriptors: try again shortly.
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    continue;
                };
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let _ = tcp.set_nodelay(true);
                    let Ok(mut s) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let mut buf = Vec::new();
                    loop {
                        let mut len = [0u8; 4];
                        if s.read_exact(&mut len).await.is_err() {
                            return;
                        }
                        let n = u32::from_be_bytes(len) as usize;
                        buf.clear();
                        buf.extend_from_slice(&len);
                        buf.resize(4 + n, 0);
                        if s.read_exact(&mut buf[4..]).await.is_err()
                            || s.write_all(&buf).await.is_err()
                        {
                            return;
                        }
                    }
                });
            }
        });
        until_stdin_closes().await;
    });
}

/// Each process's runtime: two workers (the machine has two cores).
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// A server child runs until the parent closes its stdin (or exits).
async fn until_stdin_closes() {
    tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        while std::io::stdin().lock().read_line(&mut line).unwrap_or(0) > 0 {}
    })
    .await
    .unwrap();
}

#[path = "common/process.rs"]
#[allow(dead_code)] // each bench uses part of it
mod process;
use process::{cpu_seconds, env, raise_fd_limit, Sampler};

/// The child's resident memory, in bytes.
fn rss(pid: u32) -> u64 {
    process::rss(Some(pid))
}

// ------------------------------------------------------------ the client

/// A rustls client configuration trusting `cert_pem`: TLS 1.3, ALPN `taps`
/// (postsocket's defaults), the ring provider.
fn client_tls(cert_pem: &str) -> rustls::ClientConfig {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from_pem_slice(cert_pem.as_bytes()).unwrap())
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"taps".to_vec()];
    tls
}

/// The well-behaved client: tokio-rustls, trusting the certificate.
struct Client {
    connector: tokio_rustls::TlsConnector,
    addr: SocketAddr,
}

type Tls = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

impl Client {
    fn new(cert_pem: &str, addr: SocketAddr) -> Client {
        Client {
            connector: tokio_rustls::TlsConnector::from(Arc::new(client_tls(cert_pem))),
            addr,
        }
    }

    async fn connect(&self) -> std::io::Result<Tls> {
        let tcp = tokio::net::TcpStream::connect(self.addr).await?;
        tcp.set_nodelay(true)?;
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        self.connector.connect(name, tcp).await
    }

    /// Round trips of 64-byte Messages for `secs`, a new connection every
    /// 100: the round trips' times and the connects' (TCP and TLS
    /// handshakes) in microseconds, and how many failed (a connect or a
    /// round trip over 5 s, or an error). With `HOSTILE_TRACE` set, every
    /// round trip is appended to that file under a `# label` line: the
    /// connection's number, the round trip's number in it, when it started
    /// and how long it took (microseconds since the probe started).
    async fn probe(&self, secs: f64, label: &str) -> Probe {
        let end = Instant::now() + Duration::from_secs_f64(secs);
        let (mut times, mut connects, mut failed) = (Vec::new(), Vec::new(), 0);
        let mut later = Vec::new();
        let mut trace: Vec<(usize, usize, f64, f64)> = Vec::new();
        let t0 = Instant::now();
        let mut msg = vec![0u8, 0, 0, 64];
        msg.extend_from_slice(&[7u8; 64]);
        while Instant::now() < end {
            let t = Instant::now();
            let mut conn = match tokio::time::timeout(Duration::from_secs(5), self.connect()).await
            {
                Ok(Ok(c)) => c,
                _ => {
                    failed += 1;
                    continue;
                }
            };
            connects.push(t.elapsed().as_secs_f64() * 1e6);
            for i in 0..100 {
                let t = Instant::now();
                let trip = async {
                    conn.write_all(&msg).await?;
                    let mut back = [0u8; 68];
                    conn.read_exact(&mut back).await?;
                    Ok::<_, std::io::Error>(())
                };
                match tokio::time::timeout(Duration::from_secs(5), trip).await {
                    Ok(Ok(())) => {
                        let d = t.elapsed().as_secs_f64() * 1e6;
                        times.push(d);
                        if i > 0 {
                            later.push(d);
                        }
                        trace.push((connects.len(), i, (t - t0).as_secs_f64() * 1e6, d));
                    }
                    _ => {
                        failed += 1;
                        break;
                    }
                }
                if Instant::now() >= end {
                    break;
                }
            }
        }
        if let Ok(path) = std::env::var("HOSTILE_TRACE") {
            use std::io::Write as _;
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .unwrap();
            writeln!(f, "# {label}").unwrap();
            for (c, i, at, d) in &trace {
                writeln!(f, "{c} {i} {at:.0} {d:.1}").unwrap();
            }
        }
        Probe {
            times,
            later,
            connects,
            failed,
        }
    }
}

/// What the well-behaved client saw.
struct Probe {
    times: Vec<f64>,
    /// The round trips after each connection's first.
    later: Vec<f64>,
    connects: Vec<f64>,
    failed: u64,
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v.get(((v.len() as f64 * p) as usize).min(v.len().saturating_sub(1)))
        .copied()
        .unwrap_or(f64::NAN)
}

// ------------------------------------------------------------ the floods

/// The loopback address `127.0.0.(2 + i % 200)`, port 0.
fn source(i: usize) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 2 + (i % 200) as u8], 0))
}

/// `n` TCP connections to `addr`, each sending `first` once and then
/// nothing, reopened whenever the server drops one, until `stop`. Counts
/// connections opened. They run on their own thread and runtime, apart from
/// the well-behaved client's.
fn tcp_flood(
    addr: SocketAddr,
    n: usize,
    first: &'static [u8],
    stop: Arc<AtomicBool>,
) -> Arc<AtomicU64> {
    let opened = Arc::new(AtomicU64::new(0));
    let count = opened.clone();
    std::thread::spawn(move || {
        background();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let end = Arc::new(tokio::sync::Notify::new());
            for i in 0..n {
                let (stop, count, end) = (stop.clone(), count.clone(), end.clone());
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        let sock = tokio::net::TcpSocket::new_v4().unwrap();
                        if sock.bind(source(i)).is_err() {
                            return;
                        }
                        let connect = tokio::time::timeout(Duration::from_secs(2), sock.connect(addr));
                        let Ok(Ok(mut s)) = connect.await else {
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        };
                        count.fetch_add(1, Ordering::Relaxed);
                        let _ = s.write_all(first).await;
                        let mut buf = [0u8; 256];
                        // Until the server drops it, or the flood ends.
                        tokio::select! {
                            _ = async { while let Ok(n) = s.read(&mut buf).await { if n == 0 { break } } } => {}
                            _ = end.notified() => return,
                        }
                    }
                });
            }
            while !stop.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            end.notify_waiters();
        });
    });
    opened
}

/// `n` UDP sockets sending 100 bytes to `addr` every 100 ms each, until `stop`.
fn udp_flood(addr: SocketAddr, n: usize, stop: Arc<AtomicBool>) -> Arc<AtomicU64> {
    let sent = Arc::new(AtomicU64::new(0));
    let socks: Vec<std::net::UdpSocket> = (0..n)
        .filter_map(|i| std::net::UdpSocket::bind(source(i)).ok())
        .collect();
    let count = sent.clone();
    std::thread::spawn(move || {
        background();
        while !stop.load(Ordering::Relaxed) {
            let round = Instant::now();
            for s in &socks {
                if s.send_to(&[1u8; 100], addr).is_ok() {
                    count.fetch_add(1, Ordering::Relaxed);
                }
            }
            std::thread::sleep(Duration::from_millis(100).saturating_sub(round.elapsed()));
        }
    });
    sent
}

/// Genuine QUIC Initials, each a new connection attempt, from 200 loopback
/// addresses that never answer: `per_s` per second to `addr`, until `stop`.
fn quic_flood(
    addr: SocketAddr,
    cert_pem: &str,
    per_s: u64,
    stop: Arc<AtomicBool>,
) -> Arc<AtomicU64> {
    let crypto =
        quinn_proto::crypto::rustls::QuicClientConfig::try_from(client_tls(cert_pem)).unwrap();
    let config = quinn_proto::ClientConfig::new(Arc::new(crypto));
    let sent = Arc::new(AtomicU64::new(0));
    let count = sent.clone();
    let socks: Vec<std::net::UdpSocket> = (0..200)
        .filter_map(|i| std::net::UdpSocket::bind(source(i)).ok())
        .collect();
    std::thread::spawn(move || {
        background();
        let mut endpoint = quinn_proto::Endpoint::new(
            Arc::new(quinn_proto::EndpointConfig::default()),
            None,
            false,
            None,
        );
        let mut buf = Vec::with_capacity(1500);
        let start = Instant::now();
        let mut n: u64 = 0;
        while !stop.load(Ordering::Relaxed) {
            // Paced: n Initials by n / per_s seconds.
            let due = Duration::from_secs_f64(n as f64 / per_s as f64);
            if let Some(wait) = due.checked_sub(start.elapsed()) {
                std::thread::sleep(wait);
            }
            let now = Instant::now();
            let Ok((handle, mut conn)) = endpoint.connect(now, config.clone(), addr, "localhost")
            else {
                break;
            };
            buf.clear();
            if let Some(t) = conn.poll_transmit(now, 1, &mut buf) {
                if socks[n as usize % socks.len()]
                    .send_to(&buf[..t.size], addr)
                    .is_ok()
                {
                    count.fetch_add(1, Ordering::Relaxed);
                }
            }
            // The attempt is never continued: forget it.
            drop(conn);
            endpoint.handle_event(handle, quinn_proto::EndpointEvent::drained());
            n += 1;
        }
    });
    sent
}

// ------------------------------------------------------------ the run

/// A server child: the process (closing its stdin ends it), its pid, its
/// TLS (and QUIC) port and its UDP port (none for the raw baseline).
struct Server {
    child: std::process::Child,
    pid: u32,
    secure: SocketAddr,
    udp: SocketAddr,
}

impl Server {
    /// Start this binary again as the server `kind` (`postsocket` or `raw`).
    fn spawn(kind: &str, cert: &str, key: &str) -> Server {
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .env("HOSTILE_SERVER", kind)
            .env("HOSTILE_CERT", cert)
            .env("HOSTILE_KEY", key)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("the server process");
        let pid = child.id();
        let mut ready = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut ready)
            .unwrap();
        let ports: Vec<u16> = ready
            .split_whitespace()
            .skip(1)
            .filter_map(|p| p.parse().ok())
            .collect();
        assert_eq!(ports.len(), 2, "the {kind} server said {ready:?}");
        Server {
            child,
            pid,
            secure: SocketAddr::from(([127, 0, 0, 1], ports[0])),
            udp: SocketAddr::from(([127, 0, 0, 1], ports[1])),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The well-behaved client's quiet baseline against `client`'s server: its
/// p99 round trip, once printed.
async fn quiet(name: &str, client: &Client, pid: u32) -> f64 {
    // Warm up, then the baseline.
    client.probe(1.0, &format!("warm-up {name}")).await;
    let mut quiet = client.probe(3.0, &format!("quiet {name}")).await;
    let q99 = percentile(&mut quiet.times, 0.99);
    println!(
        "quiet, {name}: {} round trips, p50 {:.0} us, p99 {q99:.0} us (after each connection's first: {:.0} us); {} connects, p99 {:.1} ms; {} failed; resident {:.1} MiB",
        quiet.times.len(),
        percentile(&mut quiet.times, 0.5),
        percentile(&mut quiet.later, 0.99),
        quiet.connects.len(),
        percentile(&mut quiet.connects, 0.99) / 1000.0,
        quiet.failed,
        rss(pid) as f64 / 1048576.0
    );
    q99
}

/// This machine's round trip after an idle spell, with nothing but raw
/// tokio: a TCP echo in this process, 64-byte round trips, each after
/// `IDLE_WAKE_GAP` of silence, against round trips back to back. On a
/// virtual machine an idle vCPU is descheduled, and the first packets after
/// a pause wait for it to run again; the well-behaved client's first round
/// trip on each connection follows its connect, which under a TCP flood
/// waits in the backlog for a place (the `p99 ms` of connects). Printed
/// beside the floods so that their first round trips can be read against it.
async fn idle_wake() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const IDLE_WAKE_GAP: Duration = Duration::from_millis(200);
    const ROUNDS: usize = 20;
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        s.set_nodelay(true).unwrap();
        let mut b = [0u8; 64];
        while let Ok(n) = s.read(&mut b).await {
            if n == 0 || s.write_all(&b[..n]).await.is_err() {
                break;
            }
        }
    });
    let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
    c.set_nodelay(true).unwrap();
    let mut b = [0u8; 64];
    let mut round_trip = async || {
        let t = Instant::now();
        c.write_all(&[7u8; 64]).await.unwrap();
        c.read_exact(&mut b).await.unwrap();
        t.elapsed().as_secs_f64() * 1e6
    };
    let mut warm = Vec::new();
    for _ in 0..1000 {
        warm.push(round_trip().await);
    }
    let mut after_idle = Vec::new();
    for _ in 0..ROUNDS {
        tokio::time::sleep(IDLE_WAKE_GAP).await;
        after_idle.push(round_trip().await);
    }
    drop(c);
    let _ = server.await;
    println!(
        "this machine, raw tokio TCP echo: round trip p50 {:.0} us back to back; the first after {} ms idle: p50 {:.0} us, max {:.0} us ({ROUNDS} tries)",
        percentile(&mut warm, 0.5),
        IDLE_WAKE_GAP.as_millis(),
        percentile(&mut after_idle, 0.5),
        percentile(&mut after_idle, 1.0),
    );
}

async fn attack() {
    // The floods hold thousands of sockets (and so does the raw server,
    // which inherits the limit).
    raise_fd_limit(None);
    let secs = env("HOSTILE_SECS", 10) as f64;
    let conns = env("HOSTILE_CONNS", 2000) as usize;
    let sources = env("HOSTILE_SOURCES", 2000) as usize;
    let initials = env("HOSTILE_INITIALS_PER_S", 2000);
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let (cert, key) = (ck.cert.pem(), ck.signing_key.serialize_pem());
    let only = std::env::var("HOSTILE_ONLY").unwrap_or_default();
    let floods = ["tcp-silent", "tls-stalled", "udp-sources", "quic-initials"];
    let floods: Vec<&str> = floods
        .into_iter()
        .filter(|f| only.is_empty() || only.contains(f))
        .collect();
    let tcp_flood_runs = floods
        .iter()
        .any(|f| f.starts_with("tcp") || f.starts_with("tls"));
    let ours = Server::spawn("postsocket", &cert, &key);
    // The raw baseline only for the floods of its TLS port.
    let raw = tcp_flood_runs.then(|| Server::spawn("raw", &cert, &key));
    println!("hostile peers against one postsocket Listener process (TLS+QUIC port, UDP port), {secs} s per flood; the TCP floods also against a raw tokio-rustls server (its own process, no limits)");
    println!(
        "goals: resident memory growth < {GOAL_MIB} MiB; the well-behaved TLS client's p99 round trip <= {GOAL_P99}x quiet, nothing failed"
    );
    idle_wake().await;
    let ours_client = Client::new(&cert, ours.secure);
    let ours_q99 = quiet("postsocket", &ours_client, ours.pid).await;
    let raw_q99 = match &raw {
        Some(raw) => quiet("raw", &Client::new(&cert, raw.secure), raw.pid).await,
        None => f64::NAN,
    };
    println!(
        "{:<14} {:<10} {:>20} {:>10} {:>5} {:>11} {:>6} {:>7} {:>6} {:>8} {:>8} {:>8} {:>6}  verdict",
        "flood",
        "server",
        "sent",
        "mem",
        "cpu",
        "round trips",
        "p50 us",
        "p99 us",
        "p99 x",
        "p99 rest",
        "connects",
        "p99 ms",
        "failed"
    );
    for flood in floods {
        let on_tls_port = flood == "tcp-silent" || flood == "tls-stalled";
        let servers: Vec<(&str, &Server, f64)> = std::iter::once(("postsocket", &ours, ours_q99))
            .chain(
                raw.as_ref()
                    .filter(|_| on_tls_port)
                    .map(|r| ("raw", r, raw_q99)),
            )
            .collect();
        for (name, server, q99) in servers {
            let client = Client::new(&cert, server.secure);
            let pid = server.pid;
            let stop = Arc::new(AtomicBool::new(false));
            let before = rss(pid);
            let cpu0 = cpu_seconds(pid);
            let wall = Instant::now();
            let sampler = Sampler::start(Some(pid), Duration::from_millis(50));
            let (sent, unit) = match flood {
                "tcp-silent" => (
                    tcp_flood(server.secure, conns, b"", stop.clone()),
                    "connections",
                ),
                "tls-stalled" => (
                    tcp_flood(
                        server.secure,
                        conns,
                        &[0x16, 3, 1, 2, 0, 1, 0, 1, 0xfc, 3, 3, 9, 9, 9, 9],
                        stop.clone(),
                    ),
                    "connections",
                ),
                "udp-sources" => (udp_flood(server.udp, sources, stop.clone()), "datagrams"),
                _ => (
                    quic_flood(server.secure, &cert, initials, stop.clone()),
                    "Initials",
                ),
            };
            let mut seen = client.probe(secs, &format!("{flood} {name}")).await;
            stop.store(true, Ordering::Relaxed);
            let growth = sampler.peak().saturating_sub(before) as f64 / 1048576.0;
            let cpu_share = (cpu_seconds(pid) - cpu0) / wall.elapsed().as_secs_f64() * 100.0;
            drop(sampler);
            let p99 = percentile(&mut seen.times, 0.99);
            let ok = growth < GOAL_MIB && p99 <= GOAL_P99 * q99 && seen.failed == 0;
            println!(
                "{flood:<14} {name:<10} {:>20} {:>6.1} MiB {:>4.0}% {:>11} {:>6.0} {p99:>7.0} {:>5.2}x {:>8.0} {:>8} {:>8.1} {:>6}  {}",
                format!("{} {unit}", sent.load(Ordering::Relaxed)),
                growth,
                cpu_share,
                seen.times.len(),
                percentile(&mut seen.times, 0.5),
                p99 / q99,
                percentile(&mut seen.later, 0.99),
                seen.connects.len(),
                percentile(&mut seen.connects, 0.99) / 1000.0,
                seen.failed,
                if ok { "ok" } else { "MISSED" }
            );
            // Let the server shed the flood: postsocket's handshake timeouts
            // are 10 s; the raw server's handshakes end as the flood's
            // sockets close.
            let shed = if name == "raw" { 2 } else { 11 };
            tokio::time::sleep(Duration::from_secs(shed)).await;
        }
    }
}

/// Run this thread (a flood's) at the lowest priority: on a small machine
/// the attackers share the cores with the Listener and the well-behaved
/// client, and the flood's own CPU should not be what slows the client.
fn background() {
    // SAFETY: setpriority on the calling thread (tid 0 = the caller).
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, 0, 19);
    }
}
