//! ws-echo: a plaintext WebSocket echo server on 127.0.0.1, a test helper for
//! the browser tests (`tests/browser_websocket.rs`). It uses tokio-tungstenite
//! directly, not postsocket, so the browser stack is tested against an
//! independent implementation.
//!
//! Usage: `ws-echo PORT` (0 = any free port). Prints, one per line on stdout:
//! `POSTSOCKET_WS_ECHO_PORT=P` (the echo server), `POSTSOCKET_WS_REFUSED_PORT=Q`
//! (a port that was free a moment ago: nothing listens, connections are
//! refused), `POSTSOCKET_WS_SILENT_PORT=S` (accepts TCP, never answers the
//! WebSocket handshake), then serves until killed.
//!
//! A binary message starting with [`CLOSE_REQUEST`] is not echoed: the
//! server closes that WebSocket with code 4001 and the rest of the message
//! as the reason (tests of the close path).
//!
//! For the browser WebTransport tests (`tests/browser_webtransport.rs`) it
//! also serves, with postsocket's own Listener and a fresh self-signed ECDSA
//! P-256 certificate valid 10 days (SANs localhost, 127.0.0.1, ::1; what
//! browsers accept through `serverCertificateHashes`), and prints:
//! `POSTSOCKET_WT_PORT=W`: one Listener, WebTransport on UDP W and WebSocket
//! (ws and wss) on TCP W, echoing every Message (length-prefix framed; an
//! unreliable Message comes back as a datagram);
//! `POSTSOCKET_WT_CERT_SHA256=HEX`: the SHA-256 of that certificate (DER);
//! `POSTSOCKET_WT_BLACKHOLE_PORT=B`: ws and wss echo on TCP B, and on UDP B a
//! socket that never reads (WebTransport blackholed).
//!
//! On that Listener, a Connection whose first Message is [`SINK_REQUEST`]
//! followed by an id is a sink: nothing is echoed, and the server counts the
//! Messages and bytes that arrive after it and notes how the Connection
//! ended (`finished`: the peer's clean finish, its last Message marked
//! final or a PeerFinished after it; otherwise the receive error, spaces
//! written `_`). A Message [`COUNT_REQUEST`] + id,
//! on any Connection, is answered with that count as text:
//! `messages=M bytes=B end=E` (`end=open` while the sink is still open), or
//! `unknown`. The browser tests check with it what the peer got of a
//! Connection they closed.

use futures::{SinkExt, StreamExt};
use postsocket::framer::LengthPrefixFramer;
use postsocket::{
    Identity, Listener, LocalEndpoint, MessageContext, Preconnection, SecurityParameters, StackId,
    TransportProperties,
};
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

/// A message starting with these bytes asks the server to close with code 4001.
const CLOSE_REQUEST: &[u8] = b"\xffclose:";
/// A first Message starting with these bytes makes its Connection a sink
/// (the rest is its id).
const SINK_REQUEST: &[u8] = b"\xffsink:";
/// A Message starting with these bytes asks what the sink with the id that
/// follows got.
const COUNT_REQUEST: &[u8] = b"\xffcount:";

/// What each sink got: messages, bytes, and how it ended (`None`: open).
type Sinks = std::sync::Arc<
    std::sync::Mutex<std::collections::HashMap<Vec<u8>, (u64, u64, Option<String>)>>,
>;

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let port: u16 = match std::env::args().nth(1).map(|p| p.parse()) {
        Some(Ok(p)) => p,
        _ => {
            eprintln!("usage: ws-echo PORT   (0 = any free port)");
            std::process::exit(2);
        }
    };
    let lo = Ipv4Addr::LOCALHOST;
    let echo = TcpListener::bind(SocketAddr::from((lo, port))).await?;
    let refused = std::net::TcpListener::bind(SocketAddr::from((lo, 0)))?
        .local_addr()?
        .port(); // the listener is dropped: nothing listens there now
    let silent = TcpListener::bind(SocketAddr::from((lo, 0))).await?;
    let (cert_pem, key_pem) = webtransport_certificate()?;
    let wt = listen(
        &cert_pem,
        &key_pem,
        0,
        &[StackId::Wt, StackId::Wss, StackId::Ws],
    )
    .await?;
    let (blackhole, blackhole_udp) = blackholed(&cert_pem, &key_pem).await?;
    let hash = postsocket::security::certificate_sha256(&cert_pem).map_err(io::Error::other)?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "POSTSOCKET_WS_ECHO_PORT={}", echo.local_addr()?.port())?;
        writeln!(out, "POSTSOCKET_WS_REFUSED_PORT={refused}")?;
        writeln!(
            out,
            "POSTSOCKET_WS_SILENT_PORT={}",
            silent.local_addr()?.port()
        )?;
        writeln!(out, "POSTSOCKET_WT_PORT={}", wt.local_addr().port())?;
        let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
        writeln!(out, "POSTSOCKET_WT_CERT_SHA256={hex}")?;
        writeln!(
            out,
            "POSTSOCKET_WT_BLACKHOLE_PORT={}",
            blackhole.local_addr().port()
        )?;
        out.flush()?;
    }
    tokio::spawn(echo_all(wt));
    tokio::spawn(async move {
        let _udp = blackhole_udp; // bound, never read
        echo_all(blackhole).await;
    });
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = silent.accept().await {
            held.push(stream);
        }
    });
    loop {
        let (stream, peer) = echo.accept().await?;
        tokio::spawn(async move {
            let mut ws = match tokio_tungstenite::accept_async(stream).await {
                Ok(ws) => ws,
                Err(e) => {
                    eprintln!("ws-echo: handshake with {peer} failed: {e}");
                    return;
                }
            };
            while let Some(msg) = ws.next().await {
                let reply = match msg {
                    Ok(Message::Binary(b)) if b.starts_with(CLOSE_REQUEST) => {
                        let reason =
                            String::from_utf8_lossy(&b[CLOSE_REQUEST.len()..]).into_owned();
                        let _ = ws
                            .close(Some(CloseFrame {
                                code: CloseCode::from(4001),
                                reason: reason.into(),
                            }))
                            .await;
                        // Drain until the peer's closing frame ends the stream.
                        while let Some(Ok(_)) = ws.next().await {}
                        return;
                    }
                    Ok(m @ (Message::Binary(_) | Message::Text(_))) => m,
                    Ok(Message::Close(_)) | Err(_) => break,
                    Ok(_) => continue,
                };
                if ws.send(reply).await.is_err() {
                    break;
                }
            }
            // Answers a peer's close frame (tungstenite queued the reply) and
            // ends the connection.
            let _ = ws.close(None).await;
        });
    }
}

use std::io;

/// A self-signed ECDSA P-256 certificate for localhost, 127.0.0.1 and ::1,
/// valid from an hour ago for 10 days in all (browsers accept at most 14
/// through `serverCertificateHashes`): (certificate PEM, key PEM).
fn webtransport_certificate() -> io::Result<(String, String)> {
    let key =
        rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(io::Error::other)?;
    let mut params = rcgen::CertificateParams::new(vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ])
    .map_err(io::Error::other)?;
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(10) - time::Duration::hours(1);
    let cert = params.self_signed(&key).map_err(io::Error::other)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// A postsocket Listener on 127.0.0.1:`port` for `stacks`, with the
/// certificate, admitting plaintext ws too (opportunistic security).
async fn listen(cert: &str, key: &str, port: u16, stacks: &[StackId]) -> io::Result<Listener> {
    let local = LocalEndpoint::new()
        .with_socket_addr(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
        .map_err(io::Error::other)?;
    let mut sec = SecurityParameters::opportunistic();
    sec.server_certificate = vec![Identity::from_pem(cert, key).map_err(io::Error::other)?];
    let mut pre = Preconnection::new(vec![local], vec![], TransportProperties::new(), sec);
    pre.add_framer(LengthPrefixFramer::new());
    pre.set_protocols(stacks.to_vec());
    pre.listen().await.map_err(io::Error::other)
}

/// ws and wss on TCP port B and a UDP socket on B that is never read.
async fn blackholed(cert: &str, key: &str) -> io::Result<(Listener, std::net::UdpSocket)> {
    for _ in 0..20 {
        let l = listen(cert, key, 0, &[StackId::Wss, StackId::Ws]).await?;
        if let Ok(u) = std::net::UdpSocket::bind(l.local_addr()) {
            return Ok((l, u));
        }
    }
    Err(io::Error::other("no port number free for both TCP and UDP"))
}

/// Echo every Message of every Connection of `l`; unreliable Messages
/// (datagrams) come back as datagrams. Sinks and counts: see the module docs.
async fn echo_all(l: Listener) {
    let sinks = Sinks::default();
    loop {
        match l.next_event().await {
            postsocket::ListenerEvent::ConnectionReceived(c) => {
                let sinks = sinks.clone();
                tokio::spawn(async move {
                    let mut first = true;
                    while let Ok(m) = c.receive().await {
                        if first && m.data().starts_with(SINK_REQUEST) {
                            let id = m.data()[SINK_REQUEST.len()..].to_vec();
                            sink(&c, &sinks, id).await;
                            return;
                        }
                        first = false;
                        if m.data().starts_with(COUNT_REQUEST) {
                            let id = &m.data()[COUNT_REQUEST.len()..];
                            let answer = match sinks.lock().unwrap().get(id) {
                                Some((n, bytes, end)) => format!(
                                    "messages={n} bytes={bytes} end={}",
                                    end.as_deref().unwrap_or("open")
                                ),
                                None => "unknown".to_string(),
                            };
                            if c.send(answer.into_bytes(), None, true).await.is_err() {
                                break;
                            }
                            continue;
                        }
                        let unreliable = m.context().properties.msg_reliable == Some(false);
                        let ctx = unreliable
                            .then(|| MessageContext::new().with("msgReliable", false).ok())
                            .flatten();
                        if c.send(m.into_data(), ctx, true).await.is_err() {
                            break;
                        }
                    }
                });
            }
            postsocket::ListenerEvent::EstablishmentError(e) => {
                eprintln!("ws-echo: {e}");
            }
            postsocket::ListenerEvent::Stopped => return,
        }
    }
}

/// Count what arrives on sink `c` under `id` until it ends, and how it ends.
async fn sink(c: &postsocket::Connection, sinks: &Sinks, id: Vec<u8>) {
    sinks.lock().unwrap().insert(id.clone(), (0, 0, None));
    let end = loop {
        match c.receive().await {
            Ok(m) => {
                let last = m.context().is_final();
                let mut s = sinks.lock().unwrap();
                let entry = s.get_mut(&id).expect("inserted above");
                entry.0 += 1;
                entry.1 += m.data().len() as u64;
                if last {
                    break "finished".to_string();
                }
            }
            // The clean finish after the last Message (it came apart from
            // it, so that Message was not marked final).
            Err(e) if e.error.reason == postsocket::ErrorReason::PeerFinished => {
                break "finished".to_string();
            }
            Err(e) => break e.to_string().replace(' ', "_"),
        }
    };
    if let Some(entry) = sinks.lock().unwrap().get_mut(&id) {
        entry.2 = Some(end);
    }
}
