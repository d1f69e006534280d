//! The Rust example of README.md, compiled by CI. Keep the code between the
//! markers identical to the README's block (scripts/test.sh checks it).
//! Try it against `cargo run -p postsocket-examples --bin tapscat -- --listen --echo 7777`.

// README-BEGIN
use postsocket::framer::DelimiterFramer;
use postsocket::{Preconnection, RemoteEndpoint, SecurityParameters, TransportProperties};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Whom we talk to, and what we need: the RFC defaults (a reliable, ordered
    // byte stream), plaintext, and messages framed as lines.
    let remote = RemoteEndpoint::new()
        .with_host_name("localhost")?
        .with_port(7777)?;
    let pre = Preconnection::new(
        vec![],
        vec![remote],
        TransportProperties::new(),
        SecurityParameters::disabled(),
    )
    .with_framer(DelimiterFramer::line());

    // Gather candidates, race them, get the first one that is Ready.
    let conn = pre.initiate().await?;
    conn.send_message("hello, TAPS").await?;
    let reply = conn.receive().await?;
    println!("echo: {}", String::from_utf8_lossy(reply.data()));
    conn.close().await?;
    Ok(())
}
// README-END
