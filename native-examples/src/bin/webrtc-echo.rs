//! webrtc-echo: a WebRTC data channel echo peer (postsocket's native str0m
//! peer), a test helper for the browser tests (`tests/browser_webrtc.rs`)
//! and an example of mounting `Preconnection::answer_offer` behind HTTP
//! signaling.
//!
//! Usage: `webrtc-echo PORT` (0 = any free port). Serves on 127.0.0.1:
//! `POST /offer` with a JSON offer (`{"type":"offer","sdp":"..."}`, as
//! `HttpSignaling` sends it) answers with the JSON answer, then echoes every
//! message on every data channel of that peer connection. CORS is allowed
//! (the wasm test page comes from another port). Prints
//! `POSTSOCKET_WEBRTC_SIGNALING=http://127.0.0.1:P/offer` on stdout, then
//! serves until killed.

use postsocket::rendezvous::RendezvousDone;
use postsocket::{
    Connection, Preconnection, SecurityParameters, SignalingMessage, TransportProperties,
};
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Largest request accepted (an SDP offer is a few KB).
const MAX_REQUEST: usize = 256 * 1024;

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let port: u16 = match std::env::args().nth(1).map(|p| p.parse()) {
        Some(Ok(p)) => p,
        _ => {
            eprintln!("usage: webrtc-echo PORT   (0 = any free port)");
            std::process::exit(2);
        }
    };
    let http = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port))).await?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(
            out,
            "POSTSOCKET_WEBRTC_SIGNALING=http://{}/offer",
            http.local_addr()?
        )?;
        out.flush()?;
    }
    loop {
        let (stream, peer) = http.accept().await?;
        tokio::spawn(async move {
            if let Err(e) = tokio::time::timeout(Duration::from_secs(30), serve(stream)).await {
                eprintln!("webrtc-echo: request from {peer} timed out: {e}");
            }
        });
    }
}

/// One HTTP request on `stream` (Connection: close).
async fn serve(mut stream: TcpStream) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let (method, path, body) = loop {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        if buf.len() > MAX_REQUEST {
            return respond(&mut stream, "413 Payload Too Large", "request too large").await;
        }
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut req = httparse::Request::new(&mut headers);
        let head = match req.parse(&buf) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => continue,
            Err(e) => {
                return respond(&mut stream, "400 Bad Request", &format!("bad HTTP: {e}")).await
            }
        };
        let len = req
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("content-length"))
            .and_then(|h| {
                std::str::from_utf8(h.value)
                    .ok()?
                    .trim()
                    .parse::<usize>()
                    .ok()
            })
            .unwrap_or(0);
        if buf.len() < head + len {
            continue;
        }
        let body = String::from_utf8_lossy(&buf[head..head + len]).into_owned();
        break (
            req.method.unwrap_or("").to_string(),
            req.path.unwrap_or("").to_string(),
            body,
        );
    };
    match (method.as_str(), path.as_str()) {
        ("OPTIONS", _) => respond(&mut stream, "204 No Content", "").await,
        ("POST", "/offer") => {
            let offer = match SignalingMessage::from_json(&body) {
                Ok(SignalingMessage::Offer { sdp }) => sdp,
                Ok(_) => return respond(&mut stream, "400 Bad Request", "expected an offer").await,
                Err(e) => return respond(&mut stream, "400 Bad Request", &e.to_string()).await,
            };
            let pre = Preconnection::new(
                vec![],
                vec![],
                TransportProperties::new(),
                SecurityParameters::new(),
            );
            match pre.answer_offer(&offer).await {
                Ok((answer, pending)) => {
                    tokio::spawn(async move {
                        match pending.done().await {
                            Ok(done) => echo_all(done),
                            Err(e) => eprintln!("webrtc-echo: rendezvous failed: {e}"),
                        }
                    });
                    let json = SignalingMessage::Answer { sdp: answer }.to_json();
                    respond(&mut stream, "200 OK", &json).await
                }
                Err(e) => respond(&mut stream, "400 Bad Request", &e.to_string()).await,
            }
        }
        _ => respond(&mut stream, "404 Not Found", "POST /offer only").await,
    }
}

async fn respond(stream: &mut TcpStream, status: &str, body: &str) {
    let resp = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Access-Control-Allow-Origin: *\r\nAccess-Control-Allow-Methods: POST, OPTIONS\r\n\
         Access-Control-Allow-Headers: Content-Type\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(resp.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// Echo every message of `c` until it ends.
fn echo(c: Connection) {
    tokio::spawn(async move {
        while let Ok(m) = c.receive().await {
            if c.send_message(m.data().to_vec()).await.is_err() {
                break;
            }
        }
    });
}

/// Echo the first channel and every channel the peer opens later.
fn echo_all(done: RendezvousDone) {
    echo(done.connection);
    let listener = done.listener;
    tokio::spawn(async move {
        while let Ok(c) = listener.accept().await {
            echo(c);
        }
    });
}
