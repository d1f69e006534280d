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

use futures::{SinkExt, StreamExt};
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

/// A message starting with these bytes asks the server to close with code 4001.
const CLOSE_REQUEST: &[u8] = b"\xffclose:";

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
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "POSTSOCKET_WS_ECHO_PORT={}", echo.local_addr()?.port())?;
        writeln!(out, "POSTSOCKET_WS_REFUSED_PORT={refused}")?;
        writeln!(
            out,
            "POSTSOCKET_WS_SILENT_PORT={}",
            silent.local_addr()?.port()
        )?;
        out.flush()?;
    }
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
