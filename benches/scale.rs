//! Scale: many concurrent connections to one Listener, postsocket against
//! raw servers, side by side.
//!
//! `cargo bench --bench scale` (harness = false: a plain `main`).
//!
//! `SCALE_CONNECTIONS` (default 10,000) clients connect over loopback to ONE
//! server and stay connected; every connection echoes length-prefixed
//! Messages (4-byte big-endian length, then the body): postsocket's
//! `LengthPrefixFramer` on a postsocket Listener (one echo task per
//! Connection: receive a Message, send it back) against the same framing by
//! hand on raw servers:
//! - TCP: a tokio `TcpListener` bound with socket2 and the listen backlog
//!   postsocket's Listener uses (1024: tokio's default of 128 overflows under
//!   a connect burst); TCP_NODELAY on every stream, as postsocket sets it.
//! - TLS: tokio-rustls over the same kind of listener (ring, TLS 1.3, ALPN
//!   `taps`, postsocket's defaults).
//! - QUIC: plain quinn with the default transport config (as postsocket's)
//!   and one bidirectional stream per connection (a postsocket QUIC
//!   Connection is one stream).
//!
//! The server runs in a child process (this binary again, with
//! `SCALE_ROLE=server:<stack>:<raw|postsocket>`) so that its memory is its
//! own: it prints its port, then answers queries on stdin (accept counts,
//! allocations from a counting global allocator); its resident memory is
//! read from `/proc/<pid>/status` (Linux only). The clients, in this process,
//! are the same plain tokio / tokio-rustls / quinn code for both columns
//! (TLS clients without session resumption, so every handshake is a full
//! one; QUIC clients share 16 client endpoints and send a keep-alive every
//! 10 s, so that no connection reaches the 30 s idle timeout during a long
//! burst phase). Measured per stack and server:
//! - accept rate: connections accepted per second while all N clients
//!   connect (handshake and one 64-byte echo each) as fast as they can, at
//!   most `SCALE_CONNECT_CONCURRENCY` (512) at a time, QUIC
//!   `SCALE_QUIC_CONNECT_CONCURRENCY` (16); from the moment the server is
//!   told to start counting until its N-th accepted connection. QUIC gets
//!   fewer because both servers' UDP sockets have the kernel's default
//!   receive buffer (208 KiB; neither quinn nor postsocket enlarges it): with
//!   more than a few dozen handshakes in flight it overflows, Initials are
//!   dropped and resent after quinn's 1 s timeout, and the rate (about 140/s
//!   at 512 for both servers) then measures that timeout rather than either
//!   server. (16 also stays under the 64 unvalidated handshakes past which
//!   a postsocket Listener answers Initials with a Retry.) The datagrams
//!   the kernel dropped on the server's and the clients' sockets
//!   (`/proc/net/udp`) are printed when there are any.
//! - resident memory per idle connection: the server's VmRSS growth divided
//!   by N, from before the burst of connects to 0.5 s after all N connected
//!   and echoed once; the live heap growth (the counting allocator) next to
//!   it, and the allocator calls (alloc, alloc_zeroed, realloc) per
//!   connection over the same span. Live heap above resident means buffers
//!   allocated but not (yet) touched; resident above live heap, memory the
//!   allocator keeps after a free (glibc's arenas).
//! - server CPU while idle: the server's CPU time (/proc/<pid>/stat) over
//!   1 s with all N connected and silent, in % of one core (QUIC: the
//!   clients' keep-alives, N/10 a second, count).
//! - echo latency, p50 and p99 (p90 and p99.9 too): with all N connected,
//!   `SCALE_ROUND_TRIPS` (20,000) round trips of a 64-byte Message spread
//!   over all connections, `SCALE_LATENCY_CONCURRENCY` (32) in flight.
//! - memory after a burst: every connection echoes one `SCALE_BURST_BYTES`
//!   (1 MiB) Message, `SCALE_BURST_BATCH` (256) connections at a time; the
//!   server's peak VmRSS during the burst (sampled every 10 ms) and its
//!   VmRSS 1 s after, per connection: does it shrink back towards the idle
//!   figure (counted as shrunk if at most 1 KiB per connection stays above
//!   it)? With the live heap 1 s after: buffers kept, or the allocator
//!   keeping freed memory. Should the machine's MemAvailable fall under
//!   `SCALE_MIN_AVAILABLE_MB` (4096) the burst stops after the batch under
//!   way, the table says so, and the burst figures are per connection that
//!   echoed.
//!
//! `SCALE_STACKS=tcp,tls,quic` picks stacks (default all three),
//! `SCALE_SIDES=raw,postsocket` sides; `SCALE_RUNS=R` (default 1) measures
//! each side R times, alternating which goes first, and prints each
//! figure's median (the accept rate and the latencies move by 10-30% from
//! one run to the next on a small shared machine); `SCALE_HEAP_PROFILE=1`
//! also prints the server's live heap growth per connection by allocation
//! size (the largest few), to see where the memory per connection goes. Each phase
//! must end within 5 minutes, each connect within 10 s, each echo within
//! 30 s, or the bench stops with a message; a side whose clients cannot
//! all connect or echo is reported as FAILED, with why, and the bench goes
//! on. The fd limit is raised to the hard limit (setrlimit) in both
//! processes; `SCALE_FD_LIMIT=N` first raises the hard limit to N (that
//! needs CAP_SYS_RESOURCE). The server's open files per connection are in
//! the table (one per TCP or TLS Connection on both sides, as each holds
//! only its socket's descriptor). A quick run:
//! `SCALE_CONNECTIONS=1000 cargo bench --bench scale`.
// Linux only (/proc, setrlimit); elsewhere this bench is empty.
#![cfg_attr(not(target_os = "linux"), no_main)]
#![cfg(target_os = "linux")]

use postsocket::framer::LengthPrefixFramer;
use postsocket::security::Identity;
use postsocket::{
    ListenerEvent, LocalEndpoint, Preconnection, SecurityParameters, StackId, TransportProperties,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{self, BufRead, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

// ---------------------------------------------------------------- settings

const GOAL_IDLE_BYTES: f64 = 2048.0;
const GOAL_ACCEPT_RATIO: f64 = 0.95;
const GOAL_P99_RATIO: f64 = 1.2;
/// A burst counts as given back when at most this much per connection stays
/// above the idle figure 1 s after it.
const SHRUNK_BYTES: f64 = 1024.0;
/// postsocket's TCP listen backlog (`bind_listener` in src/backend/native/tcp.rs).
const BACKLOG: i32 = 1024;
const PHASE_LIMIT: Duration = Duration::from_secs(300);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const ECHO_TIMEOUT: Duration = Duration::from_secs(30);
const SMALL: usize = 64;
const QUIC_CLIENT_ENDPOINTS: usize = 16;

#[path = "common/process.rs"]
#[allow(dead_code)] // each bench uses part of it
mod process;
use process::{cpu_seconds, Sampler};

fn env(name: &str, default: usize) -> usize {
    process::env(name, default as u64) as usize
}

/// Raise the open-file limit (to `SCALE_FD_LIMIT`, when set and allowed);
/// the limit now.
fn raise_fd_limit() -> u64 {
    process::raise_fd_limit(
        std::env::var("SCALE_FD_LIMIT")
            .ok()
            .and_then(|v| v.parse().ok()),
    )
}

fn localhost(port: u16) -> SocketAddr {
    SocketAddr::new(Ipv4Addr::LOCALHOST.into(), port)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Stack {
    Tcp,
    Tls,
    Quic,
}

impl Stack {
    const ALL: [Stack; 3] = [Stack::Tcp, Stack::Tls, Stack::Quic];
    fn key(self) -> &'static str {
        match self {
            Stack::Tcp => "tcp",
            Stack::Tls => "tls",
            Stack::Quic => "quic",
        }
    }
    fn name(self) -> &'static str {
        match self {
            Stack::Tcp => "TCP",
            Stack::Tls => "TLS",
            Stack::Quic => "QUIC",
        }
    }
    fn id(self) -> StackId {
        match self {
            Stack::Tcp => StackId::Tcp,
            Stack::Tls => StackId::Tls,
            Stack::Quic => StackId::Quic,
        }
    }
    fn parse(s: &str) -> Stack {
        Stack::ALL
            .into_iter()
            .find(|k| k.key().eq_ignore_ascii_case(s.trim()))
            .unwrap_or_else(|| panic!("unknown stack {s:?}: expected tcp, tls or quic"))
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Raw,
    Ps,
}

impl Side {
    fn key(self) -> &'static str {
        match self {
            Side::Raw => "raw",
            Side::Ps => "postsocket",
        }
    }
}

// ---------------------------------------------------------------- counting allocator

/// Counts allocator calls and live heap bytes (and, with
/// `SCALE_HEAP_PROFILE`, live blocks by size) around the system allocator.
struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);
static LIVE: AtomicI64 = AtomicI64::new(0);
static PROFILE: AtomicBool = AtomicBool::new(false);
/// Live blocks by size: 16-byte classes up to 64 KiB, then powers of two.
const FINE: usize = 4096;
const BUCKETS: usize = FINE + 1 + 48;
static BY_SIZE: [AtomicI64; BUCKETS] = [const { AtomicI64::new(0) }; BUCKETS];

fn bucket(size: usize) -> usize {
    if size <= FINE * 16 {
        size.div_ceil(16)
    } else {
        let log2 = (usize::BITS - (size - 1).leading_zeros()) as usize; // 17..
        (FINE + 1 + log2 - 17).min(BUCKETS - 1)
    }
}

fn bucket_size(b: usize) -> usize {
    if b <= FINE {
        b * 16
    } else {
        1 << (b - FINE - 1 + 17)
    }
}

fn note_alloc(size: usize) {
    ALLOCS.fetch_add(1, Ordering::Relaxed);
    LIVE.fetch_add(size as i64, Ordering::Relaxed);
    if PROFILE.load(Ordering::Relaxed) {
        BY_SIZE[bucket(size)].fetch_add(1, Ordering::Relaxed);
    }
}

fn note_free(size: usize) {
    LIVE.fetch_sub(size as i64, Ordering::Relaxed);
    if PROFILE.load(Ordering::Relaxed) {
        BY_SIZE[bucket(size)].fetch_sub(1, Ordering::Relaxed);
    }
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            note_alloc(layout.size());
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            note_alloc(layout.size());
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        note_free(layout.size());
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            note_free(layout.size());
            note_alloc(new_size);
        }
        p
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

// ---------------------------------------------------------------- certificates and TLS configs

/// The self-signed certificate for localhost both processes use (the child
/// gets it in `SCALE_CERT_PEM` and `SCALE_KEY_PEM`).
#[derive(Clone)]
struct Cert {
    pem: String,
    key_pem: String,
}

impl Cert {
    fn generate() -> Cert {
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
            .expect("rcgen");
        Cert {
            pem: ck.cert.pem(),
            key_pem: ck.signing_key.serialize_pem(),
        }
    }
    fn from_env() -> Cert {
        Cert {
            pem: std::env::var("SCALE_CERT_PEM").expect("SCALE_CERT_PEM"),
            key_pem: std::env::var("SCALE_KEY_PEM").expect("SCALE_KEY_PEM"),
        }
    }
    fn der(&self) -> CertificateDer<'static> {
        CertificateDer::from_pem_slice(self.pem.as_bytes()).expect("certificate PEM")
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The raw servers' rustls config: ring, TLS 1.3, ALPN `taps` (postsocket's defaults).
fn raw_server_tls(cert: &Cert) -> Arc<rustls::ServerConfig> {
    let key = PrivateKeyDer::from_pem_slice(cert.key_pem.as_bytes()).expect("key PEM");
    let mut c = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("TLS 1.3")
        .with_no_client_auth()
        .with_single_cert(vec![cert.der()], key)
        .expect("server certificate");
    c.alpn_protocols = vec![b"taps".to_vec()];
    Arc::new(c)
}

/// The clients' rustls config (both columns): trusts the certificate,
/// ALPN `taps`, no session resumption (every handshake a full one).
fn client_tls(cert: &Cert) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.der()).expect("root");
    let mut c = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("TLS 1.3")
        .with_root_certificates(roots)
        .with_no_client_auth();
    c.alpn_protocols = vec![b"taps".to_vec()];
    c.resumption = rustls::client::Resumption::disabled();
    Arc::new(c)
}

// ---------------------------------------------------------------- the server child

static ACCEPTED: AtomicU64 = AtomicU64::new(0);
static ERRORS: AtomicU64 = AtomicU64::new(0);
/// The accept count at which `LAST_NS` is taken ("go N").
static TARGET: AtomicU64 = AtomicU64::new(u64::MAX);
static GO_NS: AtomicU64 = AtomicU64::new(0);
static LAST_NS: AtomicU64 = AtomicU64::new(0);
static CLOCK: OnceLock<Instant> = OnceLock::new();
static MARK: Mutex<Vec<i64>> = Mutex::new(Vec::new());

fn now_ns() -> u64 {
    CLOCK.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// A connection was accepted (raw: TCP accepted, TLS handshake done, QUIC
/// stream accepted; postsocket: ConnectionReceived).
fn accepted() {
    let n = ACCEPTED.fetch_add(1, Ordering::Relaxed) + 1;
    if n == TARGET.load(Ordering::Relaxed) {
        LAST_NS.store(now_ns(), Ordering::Relaxed);
    }
}

fn establishment_error(what: impl std::fmt::Display) {
    if ERRORS.fetch_add(1, Ordering::Relaxed) < 5 {
        eprintln!("scale server: {what}");
    }
}

fn server_main(role: &str) {
    raise_fd_limit();
    now_ns();
    PROFILE.store(
        std::env::var_os("SCALE_HEAP_PROFILE").is_some(),
        Ordering::Relaxed,
    );
    let mut parts = role.split(':').skip(1);
    let stack = Stack::parse(parts.next().expect("SCALE_ROLE stack"));
    let side = match parts.next() {
        Some("raw") => Side::Raw,
        Some("postsocket") => Side::Ps,
        other => panic!("SCALE_ROLE side {other:?}: expected raw or postsocket"),
    };
    let cert = Cert::from_env();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let addr = rt.block_on(async {
        match (side, stack) {
            (Side::Ps, _) => ps_server(stack, &cert).await,
            (Side::Raw, Stack::Tcp) => raw_tcp_server(None),
            (Side::Raw, Stack::Tls) => raw_tcp_server(Some(raw_server_tls(&cert))),
            (Side::Raw, Stack::Quic) => raw_quic_server(&cert),
        }
    });
    let mut out = io::stdout().lock();
    writeln!(out, "port {}", addr.port()).expect("stdout");
    out.flush().expect("stdout");
    for line in io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let mut words = line.split_whitespace();
        let reply = match words.next() {
            Some("stats") => format!(
                "stats {} {} {} {} {} {}",
                ACCEPTED.load(Ordering::Relaxed),
                ALLOCS.load(Ordering::Relaxed),
                LIVE.load(Ordering::Relaxed),
                ERRORS.load(Ordering::Relaxed),
                GO_NS.load(Ordering::Relaxed),
                LAST_NS.load(Ordering::Relaxed),
            ),
            Some("go") => {
                let n: u64 = words.next().and_then(|w| w.parse().ok()).expect("go N");
                *MARK.lock().unwrap() = BY_SIZE.iter().map(|c| c.load(Ordering::Relaxed)).collect();
                TARGET.store(ACCEPTED.load(Ordering::Relaxed) + n, Ordering::Relaxed);
                GO_NS.store(now_ns(), Ordering::Relaxed);
                "ok".to_string()
            }
            Some("heap") => {
                let top: usize = words.next().and_then(|w| w.parse().ok()).unwrap_or(12);
                let mark = MARK.lock().unwrap();
                let mut growth: Vec<(usize, i64)> = BY_SIZE
                    .iter()
                    .enumerate()
                    .map(|(b, c)| {
                        (
                            b,
                            c.load(Ordering::Relaxed) - mark.get(b).copied().unwrap_or(0),
                        )
                    })
                    .filter(|&(_, d)| d > 0)
                    .collect();
                growth.sort_by_key(|&(b, d)| std::cmp::Reverse(d * bucket_size(b) as i64));
                growth
                    .iter()
                    .take(top)
                    .map(|&(b, d)| format!("{} {d}", bucket_size(b)))
                    .collect::<Vec<_>>()
                    .join(",")
            }
            _ => "?".to_string(),
        };
        writeln!(out, "{reply}").expect("stdout");
        out.flush().expect("stdout");
    }
    // stdin closed: the parent is done with this server.
    std::process::exit(0);
}

/// A postsocket Listener on 127.0.0.1:0 for `stack`, echoing every Message.
async fn ps_server(stack: Stack, cert: &Cert) -> SocketAddr {
    let sec = match stack {
        Stack::Tcp => SecurityParameters::disabled(),
        Stack::Tls | Stack::Quic => {
            let mut sec = SecurityParameters::new();
            sec.server_certificate =
                vec![Identity::from_pem(&cert.pem, &cert.key_pem).expect("identity")];
            sec
        }
    };
    let local = LocalEndpoint::new()
        .with_socket_addr(localhost(0))
        .expect("local endpoint");
    let mut pre = Preconnection::new(vec![local], vec![], TransportProperties::new(), sec);
    pre.set_protocols(vec![stack.id()]);
    pre.add_framer(LengthPrefixFramer::new());
    let listener = pre.listen().await.expect("postsocket listen");
    let addr = listener.local_addr();
    tokio::spawn(async move {
        loop {
            match listener.next_event().await {
                ListenerEvent::ConnectionReceived(conn) => {
                    accepted();
                    tokio::spawn(async move {
                        while let Ok(m) = conn.receive().await {
                            if conn.send_message(m.into_data()).await.is_err() {
                                break;
                            }
                        }
                    });
                }
                ListenerEvent::EstablishmentError(e) => establishment_error(e),
                ListenerEvent::Stopped => return,
            }
        }
    });
    addr
}

/// Echo length-prefixed Messages on a byte stream until it ends: the header,
/// the body read into a buffer with room for the header in front, then both
/// with one write.
async fn raw_echo<S: AsyncRead + AsyncWrite + Unpin>(mut s: S) {
    loop {
        let mut header = [0u8; 4];
        if s.read_exact(&mut header).await.is_err() {
            return;
        }
        let len = u32::from_be_bytes(header) as usize;
        let mut buf = vec![0u8; 4 + len];
        buf[..4].copy_from_slice(&header);
        if s.read_exact(&mut buf[4..]).await.is_err()
            || s.write_all(&buf).await.is_err()
            || s.flush().await.is_err()
        {
            return;
        }
    }
}

/// A raw tokio TCP server (TLS over it with `tls`) on 127.0.0.1:0, bound
/// with socket2 and postsocket's backlog.
fn raw_tcp_server(tls: Option<Arc<rustls::ServerConfig>>) -> SocketAddr {
    use socket2::{Domain, Protocol, Socket, Type};
    let sock = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).expect("socket");
    sock.set_reuse_address(true).expect("SO_REUSEADDR");
    sock.bind(&localhost(0).into()).expect("bind");
    sock.listen(BACKLOG).expect("listen");
    sock.set_nonblocking(true).expect("nonblocking");
    let listener = TcpListener::from_std(sock.into()).expect("tokio listener");
    let addr = listener.local_addr().expect("local addr");
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    tokio::spawn(async move {
        loop {
            let tcp = match listener.accept().await {
                Ok((tcp, _)) => tcp,
                Err(e) => {
                    establishment_error(format!("accept: {e}"));
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            match &acceptor {
                None => {
                    accepted();
                    tokio::spawn(raw_echo(tcp));
                }
                Some(acceptor) => {
                    let acceptor = acceptor.clone();
                    tokio::spawn(async move {
                        match tokio::time::timeout(CONNECT_TIMEOUT, acceptor.accept(tcp)).await {
                            Ok(Ok(tls)) => {
                                accepted();
                                raw_echo(tls).await;
                            }
                            Ok(Err(e)) => establishment_error(format!("TLS handshake: {e}")),
                            Err(_) => establishment_error("TLS handshake timed out"),
                        }
                    });
                }
            }
        }
    });
    addr
}

/// A raw quinn server on 127.0.0.1:0: per connection, one bidirectional
/// stream echoing length-prefixed Messages.
fn raw_quic_server(cert: &Cert) -> SocketAddr {
    let crypto =
        quinn::crypto::rustls::QuicServerConfig::try_from(raw_server_tls(cert)).expect("quic tls");
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    // Room for every client's handshake at once (quinn's default is 65,536).
    config.max_incoming(env("SCALE_CONNECTIONS", 10_000).max(1 << 16));
    let endpoint = quinn::Endpoint::server(config, localhost(0)).expect("quinn server");
    let addr = endpoint.local_addr().expect("local addr");
    tokio::spawn(async move {
        while let Some(incoming) = endpoint.accept().await {
            tokio::spawn(async move {
                let conn = match incoming.await {
                    Ok(c) => c,
                    Err(e) => return establishment_error(format!("QUIC handshake: {e}")),
                };
                let Ok((mut send, mut recv)) = conn.accept_bi().await else {
                    return;
                };
                accepted();
                loop {
                    let mut header = [0u8; 4];
                    if recv.read_exact(&mut header).await.is_err() {
                        return;
                    }
                    let len = u32::from_be_bytes(header) as usize;
                    let mut buf = vec![0u8; 4 + len];
                    buf[..4].copy_from_slice(&header);
                    if recv.read_exact(&mut buf[4..]).await.is_err()
                        || send.write_all(&buf).await.is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    addr
}

// ---------------------------------------------------------------- the parent: server handle

/// The running server child's pid, for `fail`.
static CHILD_PID: AtomicU32 = AtomicU32::new(0);

/// Stop the bench: kill the server child, print why, exit.
fn fail(msg: &str) -> ! {
    let pid = CHILD_PID.load(Ordering::Relaxed);
    if pid != 0 {
        // SAFETY: a signal to our own child.
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
    }
    eprintln!("scale: {msg}; aborting");
    std::process::exit(1);
}

async fn phase<T>(name: &str, f: impl std::future::Future<Output = T>) -> T {
    match tokio::time::timeout(PHASE_LIMIT, f).await {
        Ok(v) => v,
        Err(_) => fail(&format!(
            "phase {name} took more than {} s",
            PHASE_LIMIT.as_secs()
        )),
    }
}

struct Server {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    stdout: io::BufReader<std::process::ChildStdout>,
    addr: SocketAddr,
}

/// What the server's counters said.
struct Stats {
    accepted: u64,
    allocs: u64,
    live: i64,
    errors: u64,
    go_ns: u64,
    last_ns: u64,
}

impl Server {
    fn spawn(stack: Stack, side: Side, cert: &Cert) -> Server {
        use std::process::{Command, Stdio};
        let exe = std::env::current_exe().expect("current_exe");
        let mut child = Command::new(exe)
            .env(
                "SCALE_ROLE",
                format!("server:{}:{}", stack.key(), side.key()),
            )
            .env("SCALE_CERT_PEM", &cert.pem)
            .env("SCALE_KEY_PEM", &cert.key_pem)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn the server child");
        CHILD_PID.store(child.id(), Ordering::Relaxed);
        let stdin = child.stdin.take().expect("child stdin");
        let mut stdout = io::BufReader::new(child.stdout.take().expect("child stdout"));
        let mut line = String::new();
        stdout.read_line(&mut line).expect("server child's port");
        let port = line
            .strip_prefix("port ")
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| fail(&format!("the server child said {line:?}, not its port")));
        Server {
            child,
            stdin,
            stdout,
            addr: localhost(port),
        }
    }

    /// One query, one line back (quick: the child answers at once).
    fn ask(&mut self, cmd: &str) -> String {
        writeln!(self.stdin, "{cmd}").expect("to the server child");
        self.stdin.flush().expect("to the server child");
        let mut line = String::new();
        if self.stdout.read_line(&mut line).unwrap_or(0) == 0 {
            fail("the server child exited");
        }
        line.trim().to_string()
    }

    fn stats(&mut self) -> Stats {
        let line = self.ask("stats");
        let v: Vec<&str> = line.split_whitespace().skip(1).collect();
        let n = |i: usize| -> u64 { v.get(i).and_then(|s| s.parse().ok()).unwrap_or(0) };
        Stats {
            accepted: n(0),
            allocs: n(1),
            live: v.get(2).and_then(|s| s.parse().ok()).unwrap_or(0),
            errors: n(3),
            go_ns: n(4),
            last_ns: n(5),
        }
    }

    fn rss(&self) -> u64 {
        process::rss(Some(self.child.id()))
    }

    /// Its open file descriptors.
    fn fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.child.id())).map_or(0, |d| d.count())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        CHILD_PID.store(0, Ordering::Relaxed);
    }
}

/// Datagrams the kernel dropped (receive buffer full) on the UDP sockets
/// bound to `ports` on 127.0.0.1 (`/proc/net/udp`, the last column).
fn udp_drops(ports: &[u16]) -> u64 {
    std::fs::read_to_string("/proc/net/udp")
        .unwrap_or_default()
        .lines()
        .skip(1)
        .filter_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            let port = u16::from_str_radix(cols.get(1)?.rsplit(':').next()?, 16).ok()?;
            ports
                .contains(&port)
                .then(|| cols.last()?.parse::<u64>().ok())
                .flatten()
        })
        .sum()
}

// ---------------------------------------------------------------- the parent: clients

/// One client connection (the same code for both columns).
enum Client {
    Tcp(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
    Quic {
        _conn: quinn::Connection,
        send: quinn::SendStream,
        recv: quinn::RecvStream,
    },
}

/// What every client of one server shares.
struct Clients {
    stack: Stack,
    addr: SocketAddr,
    tls: tokio_rustls::TlsConnector,
    quic: Vec<quinn::Endpoint>,
    quic_config: quinn::ClientConfig,
}

impl Clients {
    fn new(stack: Stack, addr: SocketAddr, cert: &Cert) -> Clients {
        let tls = client_tls(cert);
        let crypto =
            quinn::crypto::rustls::QuicClientConfig::try_from(tls.clone()).expect("quic tls");
        let mut quic_config = quinn::ClientConfig::new(Arc::new(crypto));
        let mut transport = quinn::TransportConfig::default();
        transport.keep_alive_interval(Some(Duration::from_secs(10)));
        quic_config.transport_config(Arc::new(transport));
        let quic = if stack == Stack::Quic {
            (0..QUIC_CLIENT_ENDPOINTS)
                .map(|_| quinn::Endpoint::client(localhost(0)).expect("quinn client endpoint"))
                .collect()
        } else {
            Vec::new()
        };
        Clients {
            stack,
            addr,
            tls: tokio_rustls::TlsConnector::from(tls),
            quic,
            quic_config,
        }
    }

    /// Connect client `i` (TCP connect; TLS handshake; QUIC handshake and a
    /// bidirectional stream).
    async fn connect(&self, i: usize) -> io::Result<Client> {
        let connect = async {
            match self.stack {
                Stack::Tcp | Stack::Tls => {
                    let tcp = TcpStream::connect(self.addr).await?;
                    tcp.set_nodelay(true)?;
                    if self.stack == Stack::Tcp {
                        return Ok(Client::Tcp(tcp));
                    }
                    let name = ServerName::try_from("localhost").expect("name");
                    let tls = self.tls.connect(name, tcp).await?;
                    Ok(Client::Tls(Box::new(tls)))
                }
                Stack::Quic => {
                    let ep = &self.quic[i % self.quic.len()];
                    let conn = ep
                        .connect_with(self.quic_config.clone(), self.addr, "localhost")
                        .map_err(io::Error::other)?
                        .await
                        .map_err(io::Error::other)?;
                    let (send, recv) = conn.open_bi().await.map_err(io::Error::other)?;
                    Ok(Client::Quic {
                        _conn: conn,
                        send,
                        recv,
                    })
                }
            }
        };
        tokio::time::timeout(CONNECT_TIMEOUT, connect)
            .await
            .unwrap_or_else(|_| Err(io::Error::other("connect timed out (10 s)")))
    }
}

impl Client {
    /// Send `frame` (a length-prefixed Message) and read its echo back, in
    /// `scratch`-sized pieces; within 30 s.
    async fn echo(&mut self, frame: &[u8], scratch: &mut [u8]) -> io::Result<()> {
        let round = async {
            let len = match self {
                Client::Tcp(s) => echo_stream(s, frame, scratch).await?,
                Client::Tls(s) => echo_stream(&mut **s, frame, scratch).await?,
                Client::Quic { send, recv, .. } => {
                    send.write_all(frame).await.map_err(io::Error::other)?;
                    let mut header = [0u8; 4];
                    recv.read_exact(&mut header)
                        .await
                        .map_err(io::Error::other)?;
                    let len = u32::from_be_bytes(header) as usize;
                    let mut left = len;
                    while left > 0 {
                        let k = left.min(scratch.len());
                        recv.read_exact(&mut scratch[..k])
                            .await
                            .map_err(io::Error::other)?;
                        left -= k;
                    }
                    len
                }
            };
            if len + 4 != frame.len() {
                return Err(io::Error::other(format!(
                    "echo of {} bytes came back as {len}",
                    frame.len() - 4
                )));
            }
            Ok(())
        };
        tokio::time::timeout(ECHO_TIMEOUT, round)
            .await
            .unwrap_or_else(|_| Err(io::Error::other("echo timed out (30 s)")))
    }
}

/// One echo on a byte stream: write the frame, then read the header and the
/// body; the body's length.
async fn echo_stream<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    frame: &[u8],
    scratch: &mut [u8],
) -> io::Result<usize> {
    s.write_all(frame).await?;
    s.flush().await?;
    let mut header = [0u8; 4];
    s.read_exact(&mut header).await?;
    let len = u32::from_be_bytes(header) as usize;
    let mut left = len;
    while left > 0 {
        let k = left.min(scratch.len());
        s.read_exact(&mut scratch[..k]).await?;
        left -= k;
    }
    Ok(len)
}

/// A length-prefixed Message of `len` bytes.
fn frame(len: usize) -> Arc<Vec<u8>> {
    let mut f = Vec::with_capacity(4 + len);
    f.extend_from_slice(&(len as u32).to_be_bytes());
    f.resize(4 + len, 0x5a);
    Arc::new(f)
}

/// Every task's value, in order; at the first error the others are aborted.
async fn join_all<T>(
    tasks: Vec<tokio::task::JoinHandle<Result<T, String>>>,
) -> Result<Vec<T>, String> {
    let mut out = Vec::with_capacity(tasks.len());
    let mut tasks = tasks.into_iter();
    while let Some(t) = tasks.next() {
        let e = match t.await {
            Ok(Ok(v)) => {
                out.push(v);
                continue;
            }
            Ok(Err(e)) => e,
            Err(e) => format!("client task: {e}"),
        };
        for t in tasks {
            t.abort();
        }
        return Err(e);
    }
    Ok(out)
}

/// Connect `n` clients, at most `concurrency` connects (each with its first
/// small echo) in flight at once.
async fn connect_all(
    clients: &Arc<Clients>,
    n: usize,
    concurrency: usize,
) -> Result<Vec<Client>, String> {
    let gate = Arc::new(tokio::sync::Semaphore::new(concurrency));
    let small = frame(SMALL);
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let (clients, gate, small) = (clients.clone(), gate.clone(), small.clone());
            tokio::spawn(async move {
                let _permit = gate.acquire_owned().await.expect("semaphore");
                let mut c = clients
                    .connect(i)
                    .await
                    .map_err(|e| format!("connect {i}: {e}"))?;
                let mut scratch = [0u8; SMALL];
                c.echo(&small, &mut scratch)
                    .await
                    .map_err(|e| format!("first echo on connection {i}: {e}"))?;
                Ok::<Client, String>(c)
            })
        })
        .collect();
    join_all(tasks).await
}

/// `round_trips` small echoes spread over all connections, `concurrency`
/// at a time (worker `w` owns connections `w`, `w + concurrency`, ...): the
/// connections back, and every round trip's time in ns, sorted.
async fn latency(
    conns: Vec<Client>,
    round_trips: usize,
    concurrency: usize,
) -> Result<(Vec<Client>, Vec<u64>), String> {
    let workers = concurrency.clamp(1, conns.len());
    let mut parts: Vec<Vec<Client>> = (0..workers).map(|_| Vec::new()).collect();
    for (i, c) in conns.into_iter().enumerate() {
        parts[i % workers].push(c);
    }
    let small = frame(SMALL);
    let tasks: Vec<_> = parts
        .into_iter()
        .enumerate()
        .map(|(w, mut mine)| {
            let small = small.clone();
            let count = round_trips / workers + usize::from(w < round_trips % workers);
            tokio::spawn(async move {
                let mut times = Vec::with_capacity(count);
                let mut scratch = [0u8; SMALL];
                for k in 0..count {
                    let idx = k % mine.len();
                    let c = &mut mine[idx];
                    let t = Instant::now();
                    if let Err(e) = c.echo(&small, &mut scratch).await {
                        return Err(format!("latency echo: {e}"));
                    }
                    times.push(t.elapsed().as_nanos() as u64);
                }
                Ok((mine, times))
            })
        })
        .collect();
    let mut conns = Vec::new();
    let mut times = Vec::with_capacity(round_trips);
    for (mine, t) in join_all(tasks).await? {
        conns.extend(mine);
        times.extend(t);
    }
    times.sort_unstable();
    Ok((conns, times))
}

/// Every connection echoes one `size`-byte Message, `batch` connections at
/// a time, unless `low` is set (the machine runs short of memory): then the
/// rest do not. The connections back, and how many echoed.
async fn burst(
    mut conns: Vec<Client>,
    size: usize,
    batch: usize,
    low: Arc<AtomicBool>,
) -> Result<(Vec<Client>, usize), String> {
    let big = frame(size);
    let mut done = Vec::with_capacity(conns.len());
    while !conns.is_empty() {
        if low.load(Ordering::Relaxed) {
            let echoed = done.len();
            done.append(&mut conns);
            return Ok((done, echoed));
        }
        let take = batch.min(conns.len());
        let tasks: Vec<_> = conns
            .drain(..take)
            .map(|mut c| {
                let big = big.clone();
                tokio::spawn(async move {
                    let mut scratch = vec![0u8; 64 * 1024];
                    match c.echo(&big, &mut scratch).await {
                        Ok(()) => Ok(c),
                        Err(e) => Err(format!("burst echo: {e}")),
                    }
                })
            })
            .collect();
        done.extend(join_all(tasks).await?);
    }
    let echoed = done.len();
    Ok((done, echoed))
}

// ---------------------------------------------------------------- the parent: one server's figures

struct Config {
    n: usize,
    connect_concurrency: usize,
    /// QUIC's: see the module doc.
    quic_connect_concurrency: usize,
    round_trips: usize,
    latency_concurrency: usize,
    burst_bytes: usize,
    burst_batch: usize,
    /// The burst stops early when the machine's available memory falls under this.
    min_available: u64,
    heap_profile: bool,
}

/// One server's figures.
#[derive(Default)]
struct Figures {
    /// Bytes of resident memory per connection: idle, burst peak, 1 s after
    /// (the burst's growth divided by the connections that echoed in it).
    idle: f64,
    peak: f64,
    after: f64,
    /// Live heap bytes per connection: idle, 1 s after the burst.
    live_heap: f64,
    live_after: f64,
    burst_conns: usize,
    /// The server's open file descriptors per connection.
    fds: f64,
    /// The server's CPU use over 1 s with all connected and idle, in % of a core.
    idle_cpu: f64,
    allocs: f64,
    accept_rate: f64,
    p50_us: f64,
    p90_us: f64,
    p99_us: f64,
    p999_us: f64,
    connect_s: f64,
    burst_s: f64,
    total_s: f64,
    errors: u64,
    /// QUIC: datagrams the kernel dropped during the connects, at the server and at the clients.
    drops: (u64, u64),
    heap: String,
    heap_after: String,
}

impl Figures {
    /// Each figure's median over several runs (the memory guard's count:
    /// the lowest; error and drop counts: the highest; the heap profiles:
    /// the first run's).
    fn median(mut runs: Vec<Figures>) -> Figures {
        let med = |get: &dyn Fn(&Figures) -> f64| {
            let mut v: Vec<f64> = runs.iter().map(get).collect();
            v.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
            v[v.len() / 2]
        };
        let mut m = Figures {
            idle: med(&|f| f.idle),
            peak: med(&|f| f.peak),
            after: med(&|f| f.after),
            live_heap: med(&|f| f.live_heap),
            live_after: med(&|f| f.live_after),
            allocs: med(&|f| f.allocs),
            fds: med(&|f| f.fds),
            idle_cpu: med(&|f| f.idle_cpu),
            accept_rate: med(&|f| f.accept_rate),
            p50_us: med(&|f| f.p50_us),
            p90_us: med(&|f| f.p90_us),
            p99_us: med(&|f| f.p99_us),
            p999_us: med(&|f| f.p999_us),
            connect_s: med(&|f| f.connect_s),
            burst_s: med(&|f| f.burst_s),
            total_s: med(&|f| f.total_s),
            ..Figures::default()
        };
        let first = runs.swap_remove(0);
        m.burst_conns = runs
            .iter()
            .map(|f| f.burst_conns)
            .fold(first.burst_conns, usize::min);
        m.errors = runs.iter().map(|f| f.errors).fold(first.errors, u64::max);
        m.drops = runs
            .iter()
            .map(|f| f.drops)
            .fold(first.drops, |a, b| (a.0.max(b.0), a.1.max(b.1)));
        m.heap = first.heap;
        m.heap_after = first.heap_after;
        m
    }
}

/// One server's figures, or why it could not be measured (a client's
/// connect or echo failed: the server's own errors are on stderr).
async fn measure(stack: Stack, side: Side, cert: &Cert, cfg: &Config) -> Result<Figures, String> {
    let started = Instant::now();
    let label = format!("{} {}", stack.name(), side.key());
    let mut server = Server::spawn(stack, side, cert);
    let clients = Arc::new(Clients::new(stack, server.addr, cert));
    // Warm-up: one connection and echo, then gone, so that what is made once
    // per server (runtime threads, configs) is in the baseline.
    {
        let warm = phase(&format!("{label} warm-up"), connect_all(&clients, 1, 1)).await?;
        drop(warm);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let rss0 = server.rss();
    let fds0 = server.fds();
    let s0 = server.stats();
    server.ask(&format!("go {}", cfg.n));

    let t = Instant::now();
    let conns = phase(
        &format!("{label} connect"),
        connect_all(
            &clients,
            cfg.n,
            if stack == Stack::Quic {
                cfg.quic_connect_concurrency
            } else {
                cfg.connect_concurrency
            },
        ),
    )
    .await
    .map_err(|e| {
        format!(
            "{e} (the server had accepted {} of {}, with {} open files)",
            server.stats().accepted - s0.accepted,
            cfg.n,
            server.fds()
        )
    })?;
    let connect_s = t.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss1 = server.rss();
    let fds1 = server.fds();
    let s1 = server.stats();
    // What the server spends with all N connected and nothing to do.
    let cpu0 = cpu_seconds(server.child.id());
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle_cpu = (cpu_seconds(server.child.id()) - cpu0) * 100.0;
    if s1.accepted < s0.accepted + cfg.n as u64 {
        return Err(format!(
            "{} clients connected, the server accepted {}",
            cfg.n,
            s1.accepted - s0.accepted
        ));
    }
    let n = cfg.n as f64;
    let heap = if cfg.heap_profile {
        server.ask("heap 12")
    } else {
        String::new()
    };
    // QUIC: what the kernel dropped on the server's and the clients' UDP
    // sockets (their receive buffers full) during the connects.
    let client_ports: Vec<u16> = clients
        .quic
        .iter()
        .filter_map(|ep| ep.local_addr().ok().map(|a| a.port()))
        .collect();
    let drops = if stack == Stack::Quic {
        (udp_drops(&[server.addr.port()]), udp_drops(&client_ports))
    } else {
        (0, 0)
    };
    eprintln!(
        "  {label}: {} connected in {connect_s:.1} s, server +{:.1} MiB{}",
        cfg.n,
        rss1.saturating_sub(rss0) as f64 / (1 << 20) as f64,
        if stack == Stack::Quic {
            format!(
                "; UDP datagrams dropped: {} at the server, {} at the clients",
                drops.0, drops.1
            )
        } else {
            String::new()
        }
    );

    let (conns, times) = phase(
        &format!("{label} latency"),
        latency(conns, cfg.round_trips, cfg.latency_concurrency),
    )
    .await?;
    let pct = |per_mille: usize| {
        times[(times.len() * per_mille / 1000).min(times.len() - 1)] as f64 / 1e3
    };

    let sampler = Sampler::with_floor(
        Some(server.child.id()),
        Duration::from_millis(10),
        cfg.min_available,
    );
    let t = Instant::now();
    let (conns, burst_conns) = phase(
        &format!("{label} burst"),
        burst(conns, cfg.burst_bytes, cfg.burst_batch, sampler.low()),
    )
    .await?;
    let burst_s = t.elapsed().as_secs_f64();
    let peak = sampler.peak();
    drop(sampler);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss2 = server.rss();
    let s2 = server.stats();
    let heap_after = if cfg.heap_profile {
        server.ask("heap 12")
    } else {
        String::new()
    };
    if burst_conns < cfg.n {
        eprintln!(
            "  {label}: burst stopped after {burst_conns} connections: the machine's available \
             memory fell under {} MiB",
            cfg.min_available >> 20
        );
    }
    eprintln!(
        "  {label}: burst of {burst_conns} x {} B in {burst_s:.1} s, peak +{:.1} MiB, 1 s later \
         +{:.1} MiB (clients: {:.1} MiB resident)",
        cfg.burst_bytes,
        peak.saturating_sub(rss0) as f64 / (1 << 20) as f64,
        rss2.saturating_sub(rss0) as f64 / (1 << 20) as f64,
        process::rss(None) as f64 / (1 << 20) as f64,
    );
    drop(conns);
    for ep in &clients.quic {
        ep.close(0u32.into(), b"done");
    }
    drop(server);
    let per = |a: u64, b: u64| (a as f64 - b as f64) / n;
    let k = burst_conns.max(1) as f64;
    let idle = per(rss1, rss0);
    let live_heap = (s1.live - s0.live) as f64 / n;
    Ok(Figures {
        idle,
        idle_cpu,
        fds: (fds1 as f64 - fds0 as f64) / n,
        peak: idle + (peak as f64 - rss1 as f64) / k,
        after: idle + (rss2 as f64 - rss1 as f64) / k,
        live_heap,
        live_after: live_heap + (s2.live - s1.live) as f64 / k,
        burst_conns,
        allocs: per(s1.allocs, s0.allocs),
        accept_rate: n / ((s1.last_ns.saturating_sub(s1.go_ns)).max(1) as f64 / 1e9),
        p50_us: pct(500),
        p90_us: pct(900),
        p99_us: pct(990),
        p999_us: pct(999),
        connect_s,
        burst_s,
        total_s: started.elapsed().as_secs_f64(),
        errors: s2.errors,
        drops,
        heap,
        heap_after,
    })
}

// ---------------------------------------------------------------- report

fn kib(b: f64) -> String {
    format!("{:.2} KiB", b / 1024.0)
}

fn ratio(ps: f64, raw: f64) -> String {
    if raw > 0.0 && ps.is_finite() {
        format!("{:.2}x", ps / raw)
    } else {
        "-".to_string()
    }
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "ok"
    } else {
        "MISSED"
    }
}

fn print_table(stack: Stack, n: usize, runs: usize, ps: Option<&Figures>, raw: Option<&Figures>) {
    println!(
        "\n{} ({n} connections{}; connected in {} s postsocket, {} s raw; burst {} s / {} s; \
         whole run {} s / {} s)",
        stack.name(),
        if runs > 1 {
            format!("; medians of {runs} runs per side")
        } else {
            String::new()
        },
        ps.map_or("-".into(), |f| format!("{:.1}", f.connect_s)),
        raw.map_or("-".into(), |f| format!("{:.1}", f.connect_s)),
        ps.map_or("-".into(), |f| format!("{:.1}", f.burst_s)),
        raw.map_or("-".into(), |f| format!("{:.1}", f.burst_s)),
        ps.map_or("-".into(), |f| format!("{:.0}", f.total_s)),
        raw.map_or("-".into(), |f| format!("{:.0}", f.total_s)),
    );
    println!(
        "{:<40} {:>14} {:>14} {:>8}  goal",
        "", "postsocket", "raw", "ps/raw"
    );
    let row = |name: &str,
               get: &dyn Fn(&Figures) -> f64,
               fmt: &dyn Fn(f64) -> String,
               goal: &dyn Fn(f64, f64) -> String| {
        let p = ps.map(get);
        let r = raw.map(get);
        println!(
            "{:<40} {:>14} {:>14} {:>8}  {}",
            name,
            p.map_or("-".into(), fmt),
            r.map_or("-".into(), fmt),
            match (p, r) {
                (Some(p), Some(r)) => ratio(p, r),
                _ => "-".into(),
            },
            match (p, r) {
                (Some(p), r) => goal(p, r.unwrap_or(f64::NAN)),
                _ => String::new(),
            }
        );
    };
    let none = |_: f64, _: f64| String::new();
    row(
        "resident per idle connection",
        &|f| f.idle,
        &kib,
        &|p, _| format!("<= 2 KiB: {}", verdict(p <= GOAL_IDLE_BYTES)),
    );
    row(
        "  live heap per idle connection",
        &|f| f.live_heap,
        &kib,
        &none,
    );
    row(
        "  file descriptors per connection",
        &|f| f.fds,
        &|v| format!("{v:.2}"),
        &none,
    );
    row(
        "  server CPU while all idle (% of a core)",
        &|f| f.idle_cpu,
        &|v| format!("{v:.1}"),
        &none,
    );
    row(
        "  allocator calls per connection",
        &|f| f.allocs,
        &|v| format!("{v:.1}"),
        &none,
    );
    row(
        "resident per connection, burst peak",
        &|f| f.peak,
        &kib,
        &none,
    );
    row(
        "resident per connection, 1 s after",
        &|f| f.after,
        &kib,
        &none,
    );
    row(
        "  live heap per connection, 1 s after",
        &|f| f.live_after,
        &kib,
        &none,
    );
    row(
        "  kept after the burst (vs idle)",
        &|f| f.after - f.idle,
        &kib,
        &|p, _| format!("shrinks back (<= 1 KiB): {}", verdict(p <= SHRUNK_BYTES)),
    );
    row(
        "accept rate (connections/s)",
        &|f| f.accept_rate,
        &|v| format!("{v:.0}"),
        &|p, r| {
            if r.is_nan() {
                String::new()
            } else {
                format!(">= 0.95x raw: {}", verdict(p / r >= GOAL_ACCEPT_RATIO))
            }
        },
    );
    row(
        "echo latency p50 (us)",
        &|f| f.p50_us,
        &|v| format!("{v:.0}"),
        &none,
    );
    row(
        "echo latency p90 (us)",
        &|f| f.p90_us,
        &|v| format!("{v:.0}"),
        &none,
    );
    row(
        "echo latency p99 (us)",
        &|f| f.p99_us,
        &|v| format!("{v:.0}"),
        &|p, r| {
            if r.is_nan() {
                String::new()
            } else {
                format!("<= 1.2x raw: {}", verdict(p / r <= GOAL_P99_RATIO))
            }
        },
    );
    row(
        "echo latency p99.9 (us)",
        &|f| f.p999_us,
        &|v| format!("{v:.0}"),
        &none,
    );
    for (side, f) in [("postsocket", ps), ("raw", raw)] {
        let Some(f) = f else { continue };
        if f.errors > 0 {
            println!("  {side} server: {} establishment errors", f.errors);
        }
        if f.drops != (0, 0) {
            println!(
                "  {side}: UDP datagrams the kernel dropped during the connects (receive buffer full): \
                 {} at the server, {} at the clients",
                f.drops.0, f.drops.1
            );
        }
        if f.burst_conns < n {
            println!(
                "  {side} server: only {} of {n} connections echoed in the burst (memory guard)",
                f.burst_conns
            );
        }
        for (when, heap) in [("idle", &f.heap), ("1 s after the burst", &f.heap_after)] {
            if heap.is_empty() {
                continue;
            }
            println!("  {side} server: live heap growth per connection by allocation size, {when} (largest first):");
            for item in heap.split(',') {
                let mut w = item.split_whitespace();
                let size: f64 = w.next().and_then(|s| s.parse().ok()).unwrap_or(0.0);
                let count: f64 = w.next().and_then(|s| s.parse().ok()).unwrap_or(0.0);
                println!(
                    "    <= {:>8} B: {:>6.2} blocks/conn, ~{:>7.0} B/conn",
                    size,
                    count / n as f64,
                    size * count / n as f64
                );
            }
        }
    }
}

fn main() {
    if let Ok(role) = std::env::var("SCALE_ROLE") {
        return server_main(&role);
    }
    let cfg = Config {
        n: env("SCALE_CONNECTIONS", 10_000).max(1),
        connect_concurrency: env("SCALE_CONNECT_CONCURRENCY", 512).max(1),
        quic_connect_concurrency: env("SCALE_QUIC_CONNECT_CONCURRENCY", 16).max(1),
        round_trips: env("SCALE_ROUND_TRIPS", 20_000).max(1),
        latency_concurrency: env("SCALE_LATENCY_CONCURRENCY", 32).max(1),
        burst_bytes: env("SCALE_BURST_BYTES", 1 << 20),
        burst_batch: env("SCALE_BURST_BATCH", 256).max(1),
        min_available: (env("SCALE_MIN_AVAILABLE_MB", 4096) as u64) << 20,
        heap_profile: std::env::var_os("SCALE_HEAP_PROFILE").is_some(),
    };
    let stacks: Vec<Stack> = match std::env::var("SCALE_STACKS") {
        Ok(s) => s
            .split(',')
            .filter(|s| !s.trim().is_empty())
            .map(Stack::parse)
            .collect(),
        Err(_) => Stack::ALL.to_vec(),
    };
    let sides = std::env::var("SCALE_SIDES").unwrap_or_else(|_| "raw,postsocket".into());
    let run_raw = sides.split(',').any(|s| s.trim() == "raw");
    let run_ps = sides.split(',').any(|s| s.trim() == "postsocket");
    let runs = env("SCALE_RUNS", 1).max(1);
    let limit = raise_fd_limit();
    if let Some(want) = std::env::var("SCALE_FD_LIMIT")
        .ok()
        .and_then(|v| v.parse::<libc::rlim_t>().ok())
        .filter(|&w| w > limit)
    {
        eprintln!(
            "scale: could not raise the fd limit to {want} (no CAP_SYS_RESOURCE?): it is {limit}"
        );
    }
    // The clients hold one socket per TCP connection, as does the server.
    if cfg.n as libc::rlim_t + 256 > limit {
        fail(&format!(
            "SCALE_CONNECTIONS={} needs about {} file descriptors, the hard limit (RLIMIT_NOFILE) is {limit}",
            cfg.n,
            cfg.n + 256
        ));
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let started = Instant::now();
    println!(
        "postsocket scale benchmark: {} connections to one Listener (loopback; servers in a child process; \
         length-prefixed echo; {} round trips of {SMALL} B, {} in flight; burst {} B per connection, {} at a time)",
        cfg.n, cfg.round_trips, cfg.latency_concurrency, cfg.burst_bytes, cfg.burst_batch
    );
    println!(
        "goals: <= 2 KiB resident per idle connection; buffers that shrink back after a burst; \
         accept rate >= 0.95x raw; p99 echo latency <= 1.2x raw (ps/raw: lower is better except for the accept rate)"
    );
    let cert = Cert::generate();
    rt.block_on(async {
        for stack in stacks {
            let (mut raws, mut pss) = (Vec::new(), Vec::new());
            let mut failed: Vec<String> = Vec::new();
            for run in 0..runs {
                // Alternate which side goes first.
                let order = if run % 2 == 0 {
                    [Side::Raw, Side::Ps]
                } else {
                    [Side::Ps, Side::Raw]
                };
                for side in order {
                    let figures = match side {
                        Side::Raw if run_raw => &mut raws,
                        Side::Ps if run_ps => &mut pss,
                        _ => continue,
                    };
                    match measure(stack, side, &cert, &cfg).await {
                        Ok(f) => figures.push(f),
                        Err(e) => {
                            let e = format!("{} {} FAILED: {e}", stack.name(), side.key());
                            eprintln!("  {e}");
                            failed.push(e);
                        }
                    }
                }
            }
            let raw = (!raws.is_empty()).then(|| Figures::median(raws));
            let ps = (!pss.is_empty()).then(|| Figures::median(pss));
            print_table(stack, cfg.n, runs, ps.as_ref(), raw.as_ref());
            for e in failed {
                println!("  {e}");
            }
        }
    });
    println!(
        "\ntotal benchmark time {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
