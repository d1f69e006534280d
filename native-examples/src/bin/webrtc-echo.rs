//! webrtc-echo: a WebRTC data channel echo peer (postsocket's native str0m
//! peer), a test helper for the browser tests (`tests/browser_webrtc.rs`)
//! and an example of mounting `Preconnection::answer_offer` behind HTTP
//! signaling (`postsocket_examples::signaling`).
//!
//! Usage: `webrtc-echo PORT` (0 = any free port). Serves on 127.0.0.1:
//! `POST /offer` with a JSON offer (`{"type":"offer","sdp":"..."}`, as
//! `HttpSignaling` sends it) answers with the JSON answer, then echoes every
//! message on every data channel of that peer connection. CORS is allowed
//! (the wasm test page comes from another port). Prints
//! `POSTSOCKET_WEBRTC_SIGNALING=http://127.0.0.1:P/offer` on stdout, then
//! serves until killed. As each data channel ends it prints on stderr
//! `webrtc-echo: a data channel ended (first Message "F", N echoed): WHY`,
//! WHY being the receive's error (`PeerFinished: ...` for the peer's clean
//! finish): how a browser test sees what the peer made of its Close or
//! Abort.

use postsocket_examples::demo::echo::{echo_rendezvous_then, Ended};
use postsocket_examples::signaling;
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use tokio::net::TcpListener;

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
    signaling::serve(http, Arc::new(|done| echo_rendezvous_then(done, report))).await;
    Ok(())
}

/// One line on stderr per data channel that ended.
fn report(e: Ended) {
    eprintln!(
        "webrtc-echo: a data channel ended (first Message {:?}, {} echoed): {}",
        e.first.unwrap_or_default(),
        e.messages,
        e.why
    );
}
