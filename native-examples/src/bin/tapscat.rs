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

use clap::{Parser, ValueEnum};
use postsocket::framer::{DelimiterFramer, LengthPrefixFramer};
use postsocket::{
    Connection, LocalEndpoint, MessageContext, Preconnection, Preference, ReceiveEvent,
    RemoteEndpoint, SecurityParameters, StackId, TraceEvent, TransportProperties,
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
#[derive(Debug, Parser)]
#[command(name = "tapscat", version, about, long_about = None)]
struct Args {
    /// Listen instead of connecting: `tapscat --listen [HOST] PORT` (HOST defaults to 127.0.0.1; PORT 0 picks one).
    #[arg(short, long)]
    listen: bool,

    /// With --listen: send every received message back on its connection.
    #[arg(short, long, requires = "listen")]
    echo: bool,

    /// Restrict the protocol stacks to race (repeatable): tcp, udp.
    #[arg(short, long = "protocol", value_name = "NAME")]
    protocols: Vec<String>,

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

async fn run(args: Args) -> Result<(), Failure> {
    let stacks = args
        .protocols
        .iter()
        .map(|p| StackId::parse(p))
        .collect::<Result<Vec<_>, _>>()
        .map_err(Failure::other)?;
    let only_udp = !stacks.is_empty() && stacks.iter().all(|s| *s == StackId::Udp);
    let framer = args.framer.unwrap_or(if only_udp {
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

    let mut pre = Preconnection::new(locals, remotes, props, SecurityParameters::disabled());
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

    // Without a framer on a byte stream, stdin bytes pass through as they are.
    let raw_bytes = framer == FramerKind::None;
    if args.listen {
        listen(pre, args.echo, raw_bytes).await
    } else {
        let timeout = args.timeout.map(Duration::from_secs_f64);
        connect(pre, timeout, raw_bytes).await
    }
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
) -> Result<(), Failure> {
    let conn = match timeout {
        Some(t) => pre.initiate_with_timeout(t).await,
        None => pre.initiate().await,
    }
    .map_err(Failure::establishment)?;
    // Datagram stacks keep message boundaries even without a framer.
    let is_stream = conn.stack() != StackId::Udp;
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
                        Ok(conn.stack() != StackId::Udp)
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
        let raw_bytes = raw_bytes && conn.stack() != StackId::Udp;
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
