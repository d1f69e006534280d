//! Native races on loopback, run on request: the same scenarios as the
//! `racing-demo` program, returned as data (the RacingTrace, the winner, the
//! times) so that a program can print them and the demo page can draw them.

use crate::TcpBlackhole;
use postsocket::framer::{DelimiterFramer, LengthPrefixFramer};
use postsocket::security::{certificate_sha256, Identity};
use postsocket::{
    LocalEndpoint, Preconnection, RacingTrace, RemoteEndpoint, SecurityParameters, StackId,
    TransportProperties,
};
use serde::Serialize;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;

/// The Connection Attempt Delay every scenario uses (the RFC default).
pub const ATTEMPT_DELAY: Duration = Duration::from_millis(250);
const V4: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const V6: IpAddr = IpAddr::V6(Ipv6Addr::LOCALHOST);

/// A scenario: its name (for requests) and what it sets up.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Scenario {
    /// Short name, e.g. `ipv6-blackholed`.
    pub name: &'static str,
    /// One line: what is on the wire.
    pub title: &'static str,
    /// What should happen.
    pub expect: &'static str,
    /// The stack expected to win.
    pub winner: StackId,
    /// Whether it needs IPv6 loopback.
    pub needs_ipv6: bool,
}

/// Every scenario, in the order `racing-demo` runs them.
pub const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "ipv6-blackholed",
        title: "[::1] blackholed (SYNs dropped), 127.0.0.1 on the same port serves echo",
        expect: "IPv6 hangs; IPv4 starts one attempt delay later and wins; IPv6 is cancelled",
        winner: StackId::Tcp,
        needs_ipv6: true,
    },
    Scenario {
        name: "ipv6-refused",
        title: "[::1] refuses (no listener), 127.0.0.1 on the same port serves echo",
        expect:
            "IPv6 is refused at once; IPv4 starts at once, without waiting for the attempt delay",
        winner: StackId::Tcp,
        needs_ipv6: true,
    },
    Scenario {
        name: "quic-blackholed",
        title: "QUIC blackholed (UDP never answers), TLS over TCP on the same port serves echo",
        expect: "QUIC hangs; TLS starts one attempt delay later and wins; QUIC is cancelled",
        winner: StackId::Tls,
        needs_ipv6: false,
    },
];

/// What one run of a scenario did.
#[derive(Debug, Clone, Serialize)]
pub struct RaceReport {
    /// The scenario.
    pub scenario: Scenario,
    /// What was set up (addresses, ports).
    pub setup: String,
    /// The establishment's RacingTrace.
    pub trace: RacingTrace,
    /// The stack that won.
    pub stack: StackId,
    /// The winner's remote address.
    pub remote: Option<SocketAddr>,
    /// Time from Initiate to Ready.
    pub ready_ms: f64,
    /// The message sent and its echo.
    pub message: String,
    /// The echo.
    pub echo: String,
    /// Round trip of that message.
    pub rtt_ms: f64,
}

impl RaceReport {
    /// The start time of the first attempt whose address starts with `prefix`.
    pub fn started_ms(&self, prefix: &str) -> Option<f64> {
        self.trace
            .of_kind(postsocket::TraceEventKind::AttemptStarted)
            .find(|e| {
                self.trace
                    .candidate(&e.id)
                    .and_then(|c| c.address.as_deref())
                    .is_some_and(|a| a.starts_with(prefix))
            })
            .map(|e| e.t_ms)
    }
}

/// Look a scenario up by name.
pub fn scenario(name: &str) -> Result<Scenario, String> {
    SCENARIOS
        .iter()
        .copied()
        .find(|s| s.name == name)
        .ok_or_else(|| {
            let names: Vec<&str> = SCENARIOS.iter().map(|s| s.name).collect();
            format!(
                "unknown scenario {name:?}; the scenarios are {}",
                names.join(", ")
            )
        })
}

/// Run one scenario on loopback: set it up, race, echo one message, close.
/// Fails if the expected stack did not win.
pub async fn run(s: Scenario) -> Result<RaceReport, String> {
    if s.needs_ipv6 {
        crate::ipv6_loopback_available()
            .map_err(|e| format!("{}: IPv6 loopback (::1) is not available here: {e}", s.name))?;
    }
    let report = match s.name {
        "ipv6-blackholed" => ipv6_blackholed(s).await?,
        "ipv6-refused" => ipv6_refused(s).await?,
        "quic-blackholed" => quic_blackholed(s).await?,
        other => return Err(format!("scenario {other} has no implementation")),
    };
    if report.stack != s.winner {
        return Err(format!(
            "{}: expected {} to win, {} won",
            s.name, s.winner, report.stack
        ));
    }
    Ok(report)
}

/// An echo server on `127.0.0.1:port` (0 = any); returns its address.
async fn echo_server(port: u16) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(SocketAddr::new(V4, port)).await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        // Serves the scenario's one connection, then stops.
        if let Ok(Ok((stream, _))) =
            tokio::time::timeout(Duration::from_secs(30), listener.accept()).await
        {
            let (mut rd, mut wr) = stream.into_split();
            let _ = tokio::io::copy(&mut rd, &mut wr).await;
        }
    });
    Ok(addr)
}

fn remote(a: SocketAddr) -> Result<RemoteEndpoint, String> {
    RemoteEndpoint::new()
        .with_socket_addr(a)
        .map_err(|e| e.to_string())
}

/// Race `pre`, send `message`, wait for the echo, close.
async fn race_and_echo(
    s: Scenario,
    setup: String,
    pre: Preconnection,
    message: &str,
) -> Result<RaceReport, String> {
    let started = Instant::now();
    let conn = pre
        .initiate_with_timeout(Duration::from_secs(10))
        .await
        .map_err(|e| format!("initiate failed: {e}"))?;
    let ready_ms = started.elapsed().as_secs_f64() * 1e3;
    let t0 = Instant::now();
    conn.send_message(message.as_bytes().to_vec())
        .await
        .map_err(|e| format!("send failed: {e}"))?;
    let echo = conn
        .receive()
        .await
        .map_err(|e| format!("receive failed: {e}"))?;
    let rtt_ms = t0.elapsed().as_secs_f64() * 1e3;
    let echo = String::from_utf8_lossy(echo.data()).into_owned();
    conn.close()
        .await
        .map_err(|e| format!("close failed: {e}"))?;
    if echo != message {
        return Err(format!(
            "echo {echo:?} differs from the message {message:?}"
        ));
    }
    Ok(RaceReport {
        scenario: s,
        setup,
        trace: conn.trace().clone(),
        stack: conn.stack(),
        remote: conn.remote_addr(),
        ready_ms,
        message: message.to_string(),
        echo,
        rtt_ms,
    })
}

/// Plain TCP with a line framer to `remotes`, v6 first.
fn tcp_preconnection(remotes: &[SocketAddr]) -> Result<Preconnection, String> {
    let remotes = remotes
        .iter()
        .map(|a| remote(*a))
        .collect::<Result<Vec<_>, _>>()?;
    let mut pre = Preconnection::new(
        Vec::new(),
        remotes,
        TransportProperties::new(),
        SecurityParameters::disabled(),
    );
    pre.add_framer(DelimiterFramer::line());
    pre.set_protocols(vec![StackId::Tcp]);
    pre.set_connection_attempt_delay(ATTEMPT_DELAY);
    Ok(pre)
}

async fn ipv6_blackholed(s: Scenario) -> Result<RaceReport, String> {
    // The IPv4 server must get the port number the IPv6 blackhole got; retry if it is taken.
    let mut found = None;
    for _ in 0..8 {
        let hole = TcpBlackhole::new(SocketAddr::new(V6, 0), Duration::from_millis(200))
            .map_err(|e| format!("cannot make the IPv6 blackhole: {e}"))?;
        if let Ok(v4) = echo_server(hole.addr().port()).await {
            found = Some((hole, v4));
            break;
        }
    }
    let (hole, v4) = found.ok_or("no port free on both ::1 and 127.0.0.1")?;
    let setup = format!(
        "blackhole {} (verified: a connect hangs), echo server {v4}, attempt delay {} ms",
        hole.addr(),
        ATTEMPT_DELAY.as_millis()
    );
    let pre = tcp_preconnection(&[hole.addr(), v4])?;
    let report = race_and_echo(s, setup, pre, "hello over TAPS").await;
    drop(hole);
    report
}

async fn ipv6_refused(s: Scenario) -> Result<RaceReport, String> {
    let mut found = None;
    for _ in 0..8 {
        // Take a free IPv6 port, then release it so that connecting to it is refused.
        let port = std::net::TcpListener::bind(SocketAddr::new(V6, 0))
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("cannot bind [::1]:0: {e}"))?
            .port();
        if let Ok(v4) = echo_server(port).await {
            found = Some(v4);
            break;
        }
    }
    let v4 = found.ok_or("no port free on both ::1 and 127.0.0.1")?;
    let v6 = SocketAddr::new(V6, v4.port());
    let setup = format!("closed port {v6}, echo server {v4}");
    let pre = tcp_preconnection(&[v6, v4])?;
    race_and_echo(s, setup, pre, "hello again").await
}

async fn quic_blackholed(s: Scenario) -> Result<RaceReport, String> {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
        .map_err(|e| format!("certificate: {e}"))?;
    let (cert, key) = (ck.cert.pem(), ck.signing_key.serialize_pem());
    let mut server_sec = SecurityParameters::new();
    server_sec.server_certificate =
        vec![Identity::from_pem(&cert, &key).map_err(|e| e.to_string())?];
    // A TLS Listener on port P, and a UDP socket on P that never reads (the blackhole).
    let mut tries = 0;
    let (listener, udp) = loop {
        let local = LocalEndpoint::new()
            .with_socket_addr(SocketAddr::new(V4, 0))
            .map_err(|e| e.to_string())?;
        let mut pre = Preconnection::new(
            vec![local],
            vec![],
            TransportProperties::new(),
            server_sec.clone(),
        );
        pre.add_framer(LengthPrefixFramer::new());
        pre.set_protocols(vec![StackId::Tls]);
        let l = pre.listen().await.map_err(|e| format!("listen: {e}"))?;
        match std::net::UdpSocket::bind(l.local_addr()) {
            Ok(u) => break (l, u),
            Err(_) if tries < 10 => tries += 1,
            Err(e) => return Err(format!("no port free for both TCP and UDP: {e}")),
        }
    };
    let addr = listener.local_addr();
    let setup = format!(
        "TLS server on tcp {addr}, udp {addr} blackholed; the client pins the server's certificate"
    );
    let server = tokio::spawn(async move {
        if let Ok(c) = listener.accept().await {
            while let Ok(m) = c.receive().await {
                if c.send(m.into_data(), None, true).await.is_err() {
                    break;
                }
            }
        }
    });
    let mut sec = SecurityParameters::new();
    sec.pinned_server_certificate = vec![certificate_sha256(&cert).map_err(|e| e.to_string())?];
    let mut pre = Preconnection::new(vec![], vec![remote(addr)?], TransportProperties::new(), sec);
    pre.add_framer(LengthPrefixFramer::new());
    pre.set_connection_attempt_delay(ATTEMPT_DELAY);
    let report = race_and_echo(s, setup, pre, "hello over TLS").await;
    server.abort();
    drop(udp);
    report
}
