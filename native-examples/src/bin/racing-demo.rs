//! racing-demo: Happy Eyeballs racing with postsocket, on loopback only.
//!
//! Scenario 1: `[::1]:P` is blackholed (SYNs silently dropped) and `127.0.0.1:P`
//! serves echo. postsocket tries IPv6 first, waits the Connection Attempt
//! Delay, starts IPv4, IPv4 wins and the hanging IPv6 attempt is cancelled.
//!
//! Scenario 2: `[::1]:P` refuses (no listener). The IPv6 attempt fails at once
//! and IPv4 starts immediately, without waiting for the attempt delay.
//!
//! Scenario 3: protocol racing. One server port P offers TLS over TCP while
//! its UDP port P never answers (QUIC blackholed). With secure defaults
//! postsocket races QUIC first, starts TLS one attempt delay later, TLS wins
//! and the QUIC attempt is cancelled.
//!
//! Each scenario prints the racing trace as a timeline, sends a message and
//! prints the echo and its round-trip time. Exit code 0 when all went as expected.

use postsocket::framer::DelimiterFramer;
use postsocket::{
    Connection, Preconnection, RemoteEndpoint, SecurityParameters, StackId, TraceEventKind,
    TransportProperties,
};
use postsocket_examples::{ipv6_loopback_available, TcpBlackhole};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::process::ExitCode;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;

const ATTEMPT_DELAY: Duration = Duration::from_millis(250);
const V4: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const V6: IpAddr = IpAddr::V6(Ipv6Addr::LOCALHOST);

fn main() -> ExitCode {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    match runtime.block_on(run()) {
        Ok(()) => {
            println!("\nracing-demo: all scenarios behaved as expected");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("\nracing-demo: FAILED: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), String> {
    println!("postsocket racing demo (TAPS, RFC 9622) — everything runs on loopback\n");
    match ipv6_loopback_available() {
        Ok(()) => {
            blackholed_v6().await?;
            refused_v6().await?;
        }
        Err(e) => {
            println!(
                "IPv6 loopback (::1) is NOT available on this machine ({e});\n\
                 skipping the IPv6-vs-IPv4 races and running the IPv4 part only.\n"
            );
            v4_only().await?;
        }
    }
    quic_blackholed_tls_wins().await?;
    Ok(())
}

/// Scenario 3: QUIC (UDP) blackholed, TLS over TCP on the same port number serving echo.
async fn quic_blackholed_tls_wins() -> Result<(), String> {
    use postsocket::framer::LengthPrefixFramer;
    use postsocket::security::{certificate_sha256, Identity};
    use postsocket::LocalEndpoint;
    println!("\n== Scenario 3: QUIC blackholed (UDP never answers), TLS over TCP on the same port serves echo ==");
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
        .map_err(|e| format!("certificate: {e}"))?;
    let (cert, key) = (ck.cert.pem(), ck.signing_key.serialize_pem());
    let mut server_sec = SecurityParameters::new();
    server_sec.server_certificate =
        vec![Identity::from_pem(&cert, &key).map_err(|e| e.to_string())?];
    // A TLS Listener on port P, and a UDP socket on P that never reads (the blackhole).
    let mut tries = 0;
    let (listener, _udp) = loop {
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
    println!(
        "TLS server on tcp {addr}, udp {addr} blackholed; the client pins the server's certificate"
    );
    tokio::spawn(async move {
        while let Ok(c) = listener.accept().await {
            tokio::spawn(async move {
                while let Ok(m) = c.receive().await {
                    if c.send(m.into_data(), None, true).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    let mut sec = SecurityParameters::new();
    sec.pinned_server_certificate = vec![certificate_sha256(&cert).map_err(|e| e.to_string())?];
    let remote = RemoteEndpoint::new()
        .with_socket_addr(addr)
        .map_err(|e| e.to_string())?;
    let mut pre = Preconnection::new(vec![], vec![remote], TransportProperties::new(), sec);
    pre.add_framer(LengthPrefixFramer::new());
    pre.set_connection_attempt_delay(ATTEMPT_DELAY);
    let started = Instant::now();
    let conn = pre
        .initiate_with_timeout(Duration::from_secs(10))
        .await
        .map_err(|e| format!("initiate failed: {e}"))?;
    let ready_ms = started.elapsed().as_secs_f64() * 1e3;
    print!("{}", conn.trace().timeline());
    println!("Ready after {ready_ms:.1} ms over {}", conn.stack());
    conn.send_message("hello over TLS")
        .await
        .map_err(|e| format!("send failed: {e}"))?;
    let echo = conn
        .receive()
        .await
        .map_err(|e| format!("receive failed: {e}"))?;
    println!(
        "sent \"hello over TLS\", echo {:?}",
        String::from_utf8_lossy(echo.data())
    );
    conn.close()
        .await
        .map_err(|e| format!("close failed: {e}"))?;
    if conn.stack() != StackId::Tls {
        return Err(format!("expected TLS to win, got {}", conn.stack()));
    }
    println!("=> QUIC was tried first and hung; TLS started one attempt delay later and won");
    Ok(())
}

/// An echo server on `127.0.0.1:port` (0 = any); returns its address.
async fn echo_server(port: u16) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(SocketAddr::new(V4, port)).await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut rd, mut wr) = stream.into_split();
                let _ = tokio::io::copy(&mut rd, &mut wr).await;
            });
        }
    });
    Ok(addr)
}

fn preconnection(remotes: &[SocketAddr]) -> Result<Preconnection, String> {
    let remotes = remotes
        .iter()
        .map(|a| {
            RemoteEndpoint::new()
                .with_ip_address(a.ip())
                .and_then(|e| e.with_port(a.port()))
                .map_err(|e| e.to_string())
        })
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

/// Initiate, print the timeline, echo one message, close. Returns the connection's remote address.
async fn race_and_echo(remotes: &[SocketAddr], message: &str) -> Result<(SocketAddr, f64), String> {
    let started = Instant::now();
    let conn: Connection = preconnection(remotes)?
        .initiate_with_timeout(Duration::from_secs(10))
        .await
        .map_err(|e| format!("initiate failed: {e}"))?;
    let ready_ms = started.elapsed().as_secs_f64() * 1e3;
    let trace = conn.trace();
    print!("{}", trace.timeline());
    let winner = conn
        .remote_addr()
        .ok_or("the connection has no remote address")?;
    println!(
        "Ready after {ready_ms:.1} ms over {} to {winner}",
        conn.stack()
    );

    let t0 = Instant::now();
    conn.send_message(message.as_bytes().to_vec())
        .await
        .map_err(|e| format!("send failed: {e}"))?;
    let echo = conn
        .receive()
        .await
        .map_err(|e| format!("receive failed: {e}"))?;
    let rtt = t0.elapsed();
    let echo = String::from_utf8_lossy(echo.data()).into_owned();
    println!(
        "sent {message:?}, echo {echo:?}, round trip {:.3} ms",
        rtt.as_secs_f64() * 1e3
    );
    if echo != message {
        return Err(format!(
            "echo {echo:?} differs from the message {message:?}"
        ));
    }
    conn.close()
        .await
        .map_err(|e| format!("close failed: {e}"))?;
    // When the IPv4 attempt started, relative to the start of establishment.
    let v4_start = trace
        .of_kind(TraceEventKind::AttemptStarted)
        .find(|e| {
            trace
                .candidate(&e.id)
                .and_then(|c| c.address.as_deref())
                .is_some_and(|a| a.starts_with("127."))
        })
        .map(|e| e.t_ms)
        .unwrap_or(f64::NAN);
    Ok((winner, v4_start))
}

async fn blackholed_v6() -> Result<(), String> {
    println!(
        "== Scenario 1: [::1] blackholed (SYNs dropped), 127.0.0.1 on the same port serves echo =="
    );
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
    println!(
        "blackhole {} (verified: a connect hangs), echo server {v4}, attempt delay {} ms\n",
        hole.addr(),
        ATTEMPT_DELAY.as_millis()
    );
    let (winner, v4_start) = race_and_echo(&[hole.addr(), v4], "hello over TAPS").await?;
    if !winner.is_ipv4() {
        return Err(format!("expected IPv4 to win, got {winner}"));
    }
    println!(
        "=> IPv6 hung, IPv4 started at {v4_start:.1} ms (after the {} ms attempt delay) and won\n",
        ATTEMPT_DELAY.as_millis()
    );
    drop(hole);
    Ok(())
}

async fn refused_v6() -> Result<(), String> {
    println!(
        "== Scenario 2: [::1] refuses (no listener), 127.0.0.1 on the same port serves echo =="
    );
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
    println!("closed port {v6}, echo server {v4}\n");
    let (winner, v4_start) = race_and_echo(&[v6, v4], "hello again").await?;
    if !winner.is_ipv4() {
        return Err(format!("expected IPv4 to win, got {winner}"));
    }
    println!(
        "=> IPv6 was refused at once, IPv4 started at {v4_start:.1} ms without waiting for the attempt delay\n"
    );
    Ok(())
}

async fn v4_only() -> Result<(), String> {
    println!("== IPv4 only: 127.0.0.1 serves echo ==");
    let v4 = echo_server(0)
        .await
        .map_err(|e| format!("cannot start the echo server: {e}"))?;
    race_and_echo(&[v4], "hello over TAPS").await?;
    Ok(())
}
