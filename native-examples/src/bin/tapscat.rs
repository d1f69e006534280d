//! tapscat: netcat over TAPS (RFC 9622).
//!
//! ```text
//! tapscat [OPTIONS] HOST[,HOST...] PORT        connect; stdin lines out, messages in as lines
//! tapscat --listen [--echo] [OPTIONS] [HOST] PORT
//! ```
//!
//! Each line read from stdin is sent as one Message; each Message received is
//! printed as one line. When stdin ends right after a line, that line goes
//! out as the final Message (TCP: FIN follows it); tapscat keeps printing
//! replies until the peer finishes (or, when the end could not be signalled,
//! until the peer is quiet for 500 ms), closes, and exits 0 once the close is
//! done. An establishment error exits 2 and prints every candidate's failure
//! on stderr.
//!
//! Security: `--protocol tls` (TLS over TCP) and `--protocol quic` (QUIC, one
//! stream per Connection) require security: the server certificate is
//! verified against the bundled roots, `--ca FILE`, or a `--pin-sha256 HEX`.
//! A listener needs `--cert FILE --key FILE`, or `--self-signed`, which makes
//! a throwaway certificate for localhost/127.0.0.1/::1 and prints its pin
//! (`sha256 HEX`) and PEM path on stderr. Both may be given: a listener with
//! `--protocol quic --protocol tls` listens on UDP and TCP, same port number.
//!
//! Without `--protocol`, tapscat is plaintext (TCP, UDP) like netcat, unless a
//! security option is given (`--self-signed`, `--cert`, `--pin-sha256`,
//! `--ca`, `--alpn`, `--server-name`, `--require-client-cert`): then security
//! is required and only the secure stacks race, QUIC first, then TLS over
//! TCP; a listener listens on both.
//!
//! WebSocket: `--protocol ws` (plaintext) and `--protocol wss` (secure, same
//! flags as tls) carry each line as one WebSocket message (no framer needed:
//! WebSocket keeps boundaries); `--ws-path PATH` is the HTTP path (default
//! `/`; a listener with it set answers other paths with 404). One listener
//! may serve tcp and ws (or tls and wss) on the same port.
//!
//! WebTransport: `--protocol wt` (secure, same flags as tls and quic: a
//! stream per Connection, lines framed as for TCP); `--wt-path PATH` is the
//! session's path (default `/`; a listener with it set answers other paths
//! with 404). A listener with `--protocol wt --protocol wss` serves
//! WebTransport on UDP and WebSocket on TCP, same port number.
//!
//! WebRTC: `--protocol webrtc` (alone; DTLS, message boundaries kept) meets
//! the peer by Rendezvous with HTTP signaling instead of racing: the client
//! POSTs its offer to `http://HOST:PORT/offer` (or `--signaling URL`); a
//! listener serves that route on HOST:PORT and answers with postsocket's
//! native peer, one peer connection per offer (browsers can signal to it).

use clap::{Parser, ValueEnum};
use postsocket::framer::{DelimiterFramer, LengthPrefixFramer};
use postsocket::{
    Connection, Identity, LocalEndpoint, MessageContext, Preconnection, Preference, ReceiveEvent,
    RemoteEndpoint, SecurityParameters, StackId, TraceEvent, TransportContext, TransportProperties,
};
use std::io::Write;
use std::net::IpAddr;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};

/// Exit code for an establishment error (initiate or listen failed).
const EXIT_ESTABLISHMENT: u8 = 2;
/// Exit code for bad arguments or an error after establishment.
const EXIT_OTHER: u8 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum FramerKind {
    /// One message per line (`\n`-delimited).
    Line,
    /// 4-byte big-endian length, then the message.
    Length,
    /// No framer: datagram stacks keep boundaries; stream stacks pass bytes through.
    None,
}

/// netcat over TAPS: connect or listen with postsocket, racing every candidate.
///
/// Plaintext (TCP, UDP) by default. `--protocol tls` / `--protocol quic`, or any
/// security option (--self-signed, --cert, --pin-sha256, --ca, --alpn,
/// --server-name) without --protocol, require security: then only QUIC and
/// TLS over TCP race (QUIC first), and a listener listens on both (UDP and
/// TCP, the same port number).
#[derive(Debug, Parser)]
#[command(name = "tapscat", version, about, long_about)]
struct Args {
    /// Listen instead of connecting: `tapscat --listen [HOST] PORT` (HOST defaults to 127.0.0.1; PORT 0 picks one).
    #[arg(short, long)]
    listen: bool,

    /// With --listen: send every received message back on its connection.
    #[arg(short, long, requires = "listen")]
    echo: bool,

    /// Restrict the protocol stacks to race or listen on (repeatable): tcp, udp, tls, quic, ws, wss, wt.
    /// tls, quic, wss and wt are secure; without --protocol, security options select quic and tls.
    #[arg(short, long = "protocol", value_name = "NAME")]
    protocols: Vec<String>,

    /// The HTTP path of a WebSocket (ws, wss): the client's request path; a
    /// listener serves only this path (default: `/` for clients, any for listeners).
    #[arg(long, value_name = "PATH")]
    ws_path: Option<String>,

    /// With --protocol webrtc: the signaling URL the offer is POSTed to
    /// (default `http://HOST:PORT/offer`).
    #[arg(long, value_name = "URL", conflicts_with = "listen")]
    signaling: Option<String>,

    /// The path of a WebTransport session (wt): the client's request path; a
    /// listener serves only this path (default: `/` for clients, any for listeners).
    #[arg(long, value_name = "PATH")]
    wt_path: Option<String>,

    /// Require a selection property (RFC 9622 name, e.g. preserveMsgBoundaries; repeatable).
    #[arg(long, value_name = "PROPERTY")]
    require: Vec<String>,

    /// Prefer a selection property (repeatable).
    #[arg(long, value_name = "PROPERTY")]
    prefer: Vec<String>,

    /// Avoid a selection property (repeatable).
    #[arg(long, value_name = "PROPERTY")]
    avoid: Vec<String>,

    /// Prohibit a selection property (repeatable).
    #[arg(long, value_name = "PROPERTY")]
    prohibit: Vec<String>,

    /// Message framing [default: line on stream stacks, none when only udp is selected].
    #[arg(short, long, value_enum)]
    framer: Option<FramerKind>,

    /// Connection attempt delay between racing attempts, in milliseconds (10..=2000).
    #[arg(long, value_name = "MS")]
    attempt_delay: Option<u64>,

    /// Give up establishment after this many seconds.
    #[arg(short, long, value_name = "SECONDS")]
    timeout: Option<f64>,

    /// Write the racing trace as JSON lines to FILE (`-` for stderr).
    #[arg(long, value_name = "FILE")]
    trace: Option<String>,

    /// Race with what earlier runs learned: restore the TransportContext
    /// from FILE before connecting (a missing file is a first run; an
    /// unreadable one is reported and ignored) and save it there after.
    #[arg(long, value_name = "FILE")]
    context: Option<String>,

    /// ALPN protocol to offer (client) or accept (listener) (repeatable).
    #[arg(long, value_name = "PROTOCOL")]
    alpn: Vec<String>,

    /// Trust the CA certificate(s) in this PEM file (repeatable). A listener
    /// with --require-client-cert verifies clients against them.
    #[arg(long, value_name = "FILE")]
    ca: Vec<String>,

    /// Trust the server certificate whose SHA-256 (of its DER) is HEX (repeatable).
    #[arg(long = "pin-sha256", value_name = "HEX")]
    pin_sha256: Vec<String>,

    /// Certificate chain (PEM): the listener's identity, or the client certificate.
    #[arg(long, value_name = "FILE", requires = "key")]
    cert: Option<String>,

    /// Private key (PEM) for --cert.
    #[arg(long, value_name = "FILE", requires = "cert")]
    key: Option<String>,

    /// The name to verify the server certificate for (and send as SNI).
    #[arg(long, value_name = "NAME")]
    server_name: Option<String>,

    /// With --listen: make a throwaway ECDSA P-256 certificate for
    /// localhost, 127.0.0.1 and ::1; print its pin and PEM path on stderr.
    #[arg(long, requires = "listen", conflicts_with = "cert")]
    self_signed: bool,

    /// With --listen: require a client certificate issued by a --ca.
    #[arg(long, requires = "listen")]
    require_client_cert: bool,

    /// HOST PORT (HOST may be a comma-separated list), or with --listen [HOST] PORT.
    #[arg(value_name = "HOST PORT", num_args = 1..=2, required = true)]
    target: Vec<String>,
}

type TraceSink = Arc<Mutex<Box<dyn Write + Send>>>;

/// The failure of a tapscat run: what to print and which code to exit with.
struct Failure {
    code: u8,
    message: String,
}

impl Failure {
    fn other(message: impl std::fmt::Display) -> Self {
        Failure {
            code: EXIT_OTHER,
            message: message.to_string(),
        }
    }
    fn establishment(message: impl std::fmt::Display) -> Self {
        Failure {
            code: EXIT_ESTABLISHMENT,
            message: message.to_string(),
        }
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tapscat: cannot start the runtime: {e}");
            return ExitCode::from(EXIT_OTHER);
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("tapscat: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}

/// Stacks that keep message boundaries without a framer (and whose final
/// Message does not end the stream).
fn is_message_stack(s: StackId) -> bool {
    matches!(
        s,
        StackId::Udp | StackId::Ws | StackId::Wss | StackId::Webrtc
    )
}

async fn run(args: Args) -> Result<(), Failure> {
    let stacks = args
        .protocols
        .iter()
        .map(|p| StackId::parse(p))
        .collect::<Result<Vec<_>, _>>()
        .map_err(Failure::other)?;
    let webrtc = stacks.contains(&StackId::Webrtc);
    if webrtc && stacks.len() > 1 {
        return Err(Failure::other(
            "webrtc meets its peer by Rendezvous, not by racing: use --protocol webrtc alone",
        ));
    }
    if args.signaling.is_some() && !webrtc {
        return Err(Failure::other("--signaling needs --protocol webrtc"));
    }
    let only_udp = !stacks.is_empty() && stacks.iter().all(|s| *s == StackId::Udp);
    let only_messages = !stacks.is_empty() && stacks.iter().all(|s| is_message_stack(*s));
    let framer = args.framer.unwrap_or(if only_messages {
        FramerKind::None
    } else {
        FramerKind::Line
    });

    let mut props = if only_udp {
        // RFC defaults require reliability, which UDP cannot give.
        TransportProperties::unreliable_datagram()
    } else {
        TransportProperties::new()
    };
    for (names, pref) in [
        (&args.require, Preference::Require),
        (&args.prefer, Preference::Prefer),
        (&args.avoid, Preference::Avoid),
        (&args.prohibit, Preference::Prohibit),
    ] {
        for name in names {
            props.set(name, pref).map_err(Failure::other)?;
        }
    }
    if let Some(path) = &args.ws_path {
        props
            .set("ws.path", path.as_str())
            .map_err(Failure::other)?;
    }
    if let Some(path) = &args.wt_path {
        props
            .set("wt.path", path.as_str())
            .map_err(Failure::other)?;
    }

    let trace_sink: Option<TraceSink> = match args.trace.as_deref() {
        None => None,
        Some("-") => Some(Arc::new(Mutex::new(Box::new(std::io::stderr())))),
        Some(path) => {
            let file = std::fs::File::create(path)
                .map_err(|e| Failure::other(format!("cannot create trace file {path}: {e}")))?;
            Some(Arc::new(Mutex::new(Box::new(std::io::BufWriter::new(
                file,
            )))))
        }
    };

    let (host, port) = match (args.listen, args.target.as_slice()) {
        (true, [port]) => ("127.0.0.1".to_string(), port.clone()),
        (_, [host, port]) => (host.clone(), port.clone()),
        (false, _) => return Err(Failure::other("connecting needs HOST and PORT")),
        (true, _) => return Err(Failure::other("listening needs [HOST] PORT")),
    };
    let port: u16 = port
        .parse()
        .map_err(|_| Failure::other(format!("invalid port `{port}`")))?;

    let locals;
    let remotes;
    if args.listen {
        locals = vec![local_endpoint(&host, port)?];
        remotes = Vec::new();
    } else {
        locals = Vec::new();
        remotes = host
            .split(',')
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .map(|h| remote_endpoint(h, port))
            .collect::<Result<Vec<_>, _>>()?;
        if remotes.is_empty() {
            return Err(Failure::other("no HOST given"));
        }
    }

    let security = security_parameters(&args, &stacks)?;
    let mut pre = Preconnection::new(locals, remotes, props, security);
    match framer {
        FramerKind::Line => {
            pre.add_framer(DelimiterFramer::line());
        }
        FramerKind::Length => {
            pre.add_framer(LengthPrefixFramer::new());
        }
        FramerKind::None => {}
    }
    if !stacks.is_empty() {
        pre.set_protocols(stacks);
    }
    if let Some(ms) = args.attempt_delay {
        pre.set_connection_attempt_delay(Duration::from_millis(ms));
    }
    if let Some(sink) = &trace_sink {
        let sink = Arc::clone(sink);
        pre.on_trace(move |e: &TraceEvent| write_trace_event(&sink, e));
    }
    let context = args.context.as_ref().map(|file| {
        let ctx = TransportContext::new();
        if let Err(e) = ctx.restore(file) {
            eprintln!("tapscat: {e}; racing with a fresh context");
        }
        pre.set_transport_context(ctx.clone());
        (ctx, file.clone())
    });

    // Without a framer on a byte stream, stdin bytes pass through as they are.
    let raw_bytes = framer == FramerKind::None;
    if webrtc {
        return if args.listen {
            webrtc_listen(&host, port, args.echo).await
        } else {
            let url = args
                .signaling
                .clone()
                .unwrap_or_else(|| format!("http://{}/offer", authority(&host, port)));
            let conn = pre
                .rendezvous(postsocket::HttpSignaling::new(url))
                .await
                .map_err(Failure::establishment)?
                .connection;
            talk(conn, raw_bytes).await
        };
    }
    if args.listen {
        listen(pre, args.echo, raw_bytes).await
    } else {
        let timeout = args.timeout.map(Duration::from_secs_f64);
        connect(pre, timeout, raw_bytes, context).await
    }
}

fn read_file(path: &str) -> Result<String, Failure> {
    std::fs::read_to_string(path).map_err(|e| Failure::other(format!("cannot read {path}: {e}")))
}

/// Secure parameters when TLS or QUIC is asked for, or security options are
/// given (then, without --protocol, QUIC and TLS race); otherwise plaintext,
/// as netcat.
fn security_parameters(args: &Args, stacks: &[StackId]) -> Result<SecurityParameters, Failure> {
    let tls_options = !args.alpn.is_empty()
        || !args.ca.is_empty()
        || !args.pin_sha256.is_empty()
        || args.cert.is_some()
        || args.server_name.is_some()
        || args.self_signed
        || args.require_client_cert;
    let secure_stack = stacks.iter().any(|s| {
        matches!(
            s,
            StackId::Tls | StackId::Quic | StackId::Wss | StackId::Wt | StackId::Webrtc
        )
    });
    if !secure_stack && !tls_options {
        return Ok(SecurityParameters::disabled());
    }
    if !stacks.is_empty() && !secure_stack {
        return Err(Failure::other(
            "security options (--alpn, --ca, --pin-sha256, --cert, --server-name, --self-signed) need --protocol tls, quic, wss or wt (or no --protocol)",
        ));
    }
    let mut sec = SecurityParameters::new();
    sec.alpn = args.alpn.clone();
    for f in &args.ca {
        sec.trusted_ca.push(read_file(f)?);
    }
    for p in &args.pin_sha256 {
        sec.pinned_server_certificate
            .push(postsocket::security::parse_sha256_hex(p).map_err(Failure::other)?);
    }
    sec.server_name = args.server_name.clone();
    sec.require_client_certificate = args.require_client_cert;
    let identity = match (&args.cert, &args.key) {
        (Some(c), Some(k)) => {
            Some(Identity::from_pem(&read_file(c)?, &read_file(k)?).map_err(Failure::other)?)
        }
        _ if args.self_signed => Some(self_signed()?),
        _ => None,
    };
    if let Some(id) = identity {
        if args.listen {
            sec.server_certificate = vec![id];
        } else {
            sec.client_certificate = vec![id];
        }
    }
    Ok(sec)
}

/// A throwaway certificate for localhost; its pin and PEM path go to stderr.
fn self_signed() -> Result<Identity, Failure> {
    let names = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ];
    let key = rcgen::KeyPair::generate().map_err(Failure::other)?;
    let cert = rcgen::CertificateParams::new(names)
        .and_then(|p| p.self_signed(&key))
        .map_err(Failure::other)?;
    let pem = cert.pem();
    let pin = postsocket::security::certificate_sha256(&pem).map_err(Failure::other)?;
    // A new file of our own (O_EXCL: never one planted beforehand, nor a
    // symlink someone left there), named after the certificate itself.
    let hex = postsocket::security::hex(&pin);
    let path = std::env::temp_dir().join(format!(
        "tapscat-{}-{}-cert.pem",
        std::process::id(),
        &hex[..16]
    ));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(|e| Failure::other(format!("cannot create {}: {e}", path.display())))?;
    std::io::Write::write_all(&mut file, pem.as_bytes())
        .map_err(|e| Failure::other(format!("cannot write {}: {e}", path.display())))?;
    eprintln!("sha256 {}", postsocket::security::hex(&pin));
    eprintln!("certificate {}", path.display());
    Identity::from_pem(&pem, &key.serialize_pem()).map_err(Failure::other)
}

fn write_trace_event(sink: &TraceSink, e: &TraceEvent) {
    // One event as a JSON line, through the library's own serializer.
    let line = postsocket::RacingTrace {
        events: vec![e.clone()],
    }
    .to_json_lines();
    if let Ok(mut w) = sink.lock() {
        let _ = w.write_all(line.as_bytes());
        let _ = w.flush();
    }
}

fn remote_endpoint(host: &str, port: u16) -> Result<RemoteEndpoint, Failure> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let ep = RemoteEndpoint::new();
    let ep = match host.parse::<IpAddr>() {
        Ok(ip) => ep.with_ip_address(ip),
        Err(_) => ep.with_host_name(host),
    };
    ep.and_then(|ep| ep.with_port(port)).map_err(Failure::other)
}

fn local_endpoint(host: &str, port: u16) -> Result<LocalEndpoint, Failure> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let ep = LocalEndpoint::new();
    let ep = match host.parse::<IpAddr>() {
        Ok(ip) => ep.with_ip_address(ip),
        Err(_) => ep.with_host_name(host),
    };
    ep.and_then(|ep| ep.with_port(port)).map_err(Failure::other)
}

/// Print one received message: as a line, or as raw bytes without a framer.
fn print_message(data: &[u8], end_of_message: bool, raw_bytes: bool) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(data);
    if !raw_bytes && end_of_message {
        let _ = out.write_all(b"\n");
    }
    let _ = out.flush();
}

/// How long a line read from stdin waits for the next one before it is sent:
/// if stdin ends within this time, the line goes out as the final Message
/// (TCP: FIN right after it), so the peer learns we are done sending.
const READ_AHEAD: Duration = Duration::from_millis(25);
/// When the end of stdin could not be signalled with a final Message, wait
/// until nothing has arrived for this long before closing.
const IDLE_BEFORE_CLOSE: Duration = Duration::from_millis(500);

async fn connect(
    pre: Preconnection,
    timeout: Option<Duration>,
    raw_bytes: bool,
    context: Option<(TransportContext, String)>,
) -> Result<(), Failure> {
    let conn = match timeout {
        Some(t) => pre.initiate_with_timeout(t).await,
        None => pre.initiate().await,
    };
    // What this race taught is saved whether it connected or not.
    if let Some((ctx, file)) = context {
        if let Err(e) = ctx.save(&file) {
            eprintln!("tapscat: {e}");
        }
    }
    talk(conn.map_err(Failure::establishment)?, raw_bytes).await
}

/// `host:port` for a URL (IPv6 addresses in brackets).
fn authority(host: &str, port: u16) -> String {
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V6(ip)) => format!("[{ip}]:{port}"),
        _ => format!("{host}:{port}"),
    }
}

/// Serve HTTP signaling on `host:port`: each offer gets its own peer
/// connection, whose data channels are echoed or printed.
async fn webrtc_listen(host: &str, port: u16, echo: bool) -> Result<(), Failure> {
    let http = tokio::net::TcpListener::bind(authority(host, port))
        .await
        .map_err(|e| Failure::establishment(format!("cannot listen on {host}:{port}: {e}")))?;
    let addr = http.local_addr().map_err(Failure::other)?;
    eprintln!("listening on {addr}");
    eprintln!("signaling http://{addr}/offer");
    let serve = move |c: Connection| {
        tokio::spawn(async move {
            if echo {
                echo_loop(c).await;
            } else {
                receive_loop(&c, false, None).await;
                let _ = c.close().await;
            }
        });
    };
    postsocket_examples::signaling::serve(
        http,
        std::sync::Arc::new(move |done: postsocket::RendezvousDone| {
            serve(done.connection);
            let listener = done.listener;
            tokio::spawn(async move {
                while let Ok(c) = listener.accept().await {
                    serve(c);
                }
            });
        }),
    )
    .await;
    Ok(())
}

/// Send stdin and print what comes back, then close.
async fn talk(conn: Connection, raw_bytes: bool) -> Result<(), Failure> {
    // Datagram stacks keep message boundaries even without a framer.
    let is_stream = !is_message_stack(conn.stack());
    let raw_bytes = raw_bytes && is_stream;
    let last_activity = Mutex::new(Instant::now());

    // A scope, so that the receive and send futures are dropped before close():
    // close waits for pending receives to finish.
    {
        let receiving = receive_loop(&conn, raw_bytes, Some(&last_activity));
        let sending = send_stdin(&conn, raw_bytes, &last_activity);
        tokio::pin!(receiving, sending);
        tokio::select! {
            // The peer finished: nothing more to print.
            () = &mut receiving => {}
            sent = &mut sending => {
                let finished_stream = sent?;
                if finished_stream {
                    // We sent FIN after the last line: print replies until the peer finishes too.
                    (&mut receiving).await;
                } else {
                    // Print replies until the peer goes quiet (or finishes).
                    loop {
                        tokio::select! {
                            () = &mut receiving => break,
                            () = tokio::time::sleep(IDLE_BEFORE_CLOSE / 5) => {
                                if last_activity.lock().map(|t| t.elapsed() >= IDLE_BEFORE_CLOSE).unwrap_or(true) {
                                    break;
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    conn.close()
        .await
        .map_err(|e| Failure::other(format!("close failed: {e}")))
}

/// Send each stdin line as one Message. The last line is marked final when
/// stdin ends right after it; returns whether that happened on a byte stream.
async fn send_stdin(
    conn: &Connection,
    raw_bytes: bool,
    last_activity: &Mutex<Instant>,
) -> Result<bool, Failure> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<std::io::Result<Vec<u8>>>(64);
    tokio::spawn(async move {
        let mut stdin = BufReader::new(tokio::io::stdin());
        loop {
            let mut line = Vec::new();
            match stdin.read_until(b'\n', &mut line).await {
                Ok(0) => break,
                Ok(_) => {
                    if !raw_bytes {
                        if line.last() == Some(&b'\n') {
                            line.pop();
                        }
                        if line.last() == Some(&b'\r') {
                            line.pop();
                        }
                    }
                    if tx.send(Ok(line)).await.is_err() {
                        break;
                    }
                }
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    break;
                }
            }
        }
    });
    let send = |data: Vec<u8>, last: bool| async move {
        let ctx = if last {
            Some(
                MessageContext::new()
                    .with("final", true)
                    .map_err(Failure::other)?,
            )
        } else {
            None
        };
        conn.send(data, ctx, true)
            .await
            .map_err(|e| Failure::other(format!("send failed: {e}")))?;
        if let Ok(mut t) = last_activity.lock() {
            *t = Instant::now();
        }
        Ok::<(), Failure>(())
    };
    let mut pending: Option<Vec<u8>> = None;
    loop {
        let next = if pending.is_some() {
            match tokio::time::timeout(READ_AHEAD, rx.recv()).await {
                Ok(next) => next,
                Err(_) => {
                    // No more input for now: send what we have.
                    send(pending.take().expect("pending line"), false).await?;
                    continue;
                }
            }
        } else {
            rx.recv().await
        };
        match next {
            Some(Ok(line)) => {
                if let Some(previous) = pending.replace(line) {
                    send(previous, false).await?;
                }
            }
            Some(Err(e)) => return Err(Failure::other(format!("reading stdin: {e}"))),
            None => {
                // End of stdin.
                return match pending.take() {
                    Some(last) => {
                        send(last, true).await?;
                        Ok(!is_message_stack(conn.stack()))
                    }
                    None => Ok(false),
                };
            }
        }
    }
}

/// Print every message until the Connection ends (the peer finished, or an error).
async fn receive_loop(conn: &Connection, raw_bytes: bool, last_activity: Option<&Mutex<Instant>>) {
    while let Ok(event) = conn.receive().await {
        let eom = event.is_end_of_message();
        print_message(event.data(), eom, raw_bytes);
        if let Some(t) = last_activity {
            if let Ok(mut t) = t.lock() {
                *t = Instant::now();
            }
        }
    }
}

async fn listen(pre: Preconnection, echo: bool, raw_bytes: bool) -> Result<(), Failure> {
    let listener = pre.listen().await.map_err(Failure::establishment)?;
    eprintln!("listening on {}", listener.local_addr());
    loop {
        let conn = listener
            .accept()
            .await
            .map_err(|e| Failure::other(format!("accept failed: {e}")))?;
        let raw_bytes = raw_bytes && !is_message_stack(conn.stack());
        tokio::spawn(async move {
            if echo {
                echo_loop(conn).await;
            } else {
                receive_loop(&conn, raw_bytes, None).await;
                let _ = conn.close().await;
            }
        });
    }
}

async fn echo_loop(conn: Connection) {
    loop {
        match conn.receive().await {
            Ok(ReceiveEvent::Received { data, .. }) => {
                if conn.send(data, None, true).await.is_err() {
                    break;
                }
            }
            Ok(ReceiveEvent::ReceivedPartial {
                data,
                end_of_message,
                ..
            }) => {
                if conn.send(data, None, end_of_message).await.is_err() {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    let _ = conn.close().await;
}
