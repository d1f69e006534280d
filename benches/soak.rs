//! Soak: do Messages survive everything an application does to a Connection?
//!
//! `cargo bench --bench soak` (harness = false: a plain `main`).
//!
//! For each reliable stack (TCP, TLS, QUIC, WebSocket, WebSocket over TLS,
//! WebTransport), a client sends `SOAK_MESSAGES` Messages (default 1,000,000;
//! `SOAK_STACKS=tcp,quic` picks stacks) through a postsocket echo Listener
//! and checks every echo. Each Message carries its sequence number, a length
//! from 0 to 1,023 bytes of content derived from it, and a checksum. About a
//! third of the send futures are polled once and dropped (the Message must
//! still go out, once, in order), the rest awaited; at the end the client
//! closes. The application asks for Messages (`preserveMsgBoundaries`
//! required), so the byte-stream stacks carry them framed.
//!
//! Printed per stack: Messages echoed, lost, duplicated, reordered,
//! corrupted (goal: all 0 but echoed), send futures dropped, and the time.
//! It exits 1 if any count that should be 0 is not.
// Native only (sockets, tokio); on wasm32 this bench is empty.
#![cfg_attr(all(target_arch = "wasm32", target_os = "unknown"), no_main)]
#![cfg(not(all(target_arch = "wasm32", target_os = "unknown")))]

use postsocket::{
    Connection, LocalEndpoint, Preconnection, Preference, ReceiveEvent, RemoteEndpoint,
    SecurityParameters, SelectionProperty, StackId, TransportProperties,
};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

const HEADER: usize = 8 + 8; // sequence number, checksum

fn messages() -> u64 {
    std::env::var("SOAK_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000)
}

/// A small, fast mixing function (splitmix64): the content and length of a
/// Message from its sequence number, and which send futures are dropped.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// FNV-1a over the bytes: the Message's checksum.
fn checksum(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn message(seq: u64) -> Vec<u8> {
    let r = mix(seq);
    let len = (r % 1024) as usize;
    let mut m = Vec::with_capacity(HEADER + len);
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(&[0; 8]);
    m.extend((0..len).map(|i| (r >> (i % 8 * 8)) as u8 ^ i as u8));
    let sum = checksum(&m[HEADER..]);
    m[8..16].copy_from_slice(&sum.to_be_bytes());
    m
}

/// What the client saw come back.
#[derive(Default, Debug)]
struct Tally {
    echoed: u64,
    duplicated: u64,
    reordered: u64,
    corrupted: u64,
    dropped_futures: u64,
}

fn self_signed() -> (String, String) {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
        .expect("rcgen");
    (ck.cert.pem(), ck.signing_key.serialize_pem())
}

fn wants_messages() -> TransportProperties {
    let mut p = TransportProperties::new();
    p.set_preference(
        SelectionProperty::PreserveMsgBoundaries,
        Preference::Require,
    );
    p
}

/// An echo Listener for `stacks` on 127.0.0.1.
async fn echo_listener(sec: SecurityParameters, stacks: Vec<StackId>) -> SocketAddr {
    let local = LocalEndpoint::new()
        .with_socket_addr("127.0.0.1:0".parse().unwrap())
        .unwrap();
    let mut pre = Preconnection::new(vec![local], vec![], wants_messages(), sec);
    pre.set_protocols(stacks);
    let l = pre.listen().await.expect("listen");
    let addr = l.local_addr();
    tokio::spawn(async move {
        while let Ok(c) = l.accept().await {
            tokio::spawn(async move {
                while let Ok(ReceiveEvent::Received { data, .. }) = c.receive().await {
                    if c.send_message(data).await.is_err() {
                        break;
                    }
                }
                let _ = c.close().await;
            });
        }
    });
    addr
}

async fn receive_all(conn: Arc<Connection>, n: u64) -> Tally {
    let mut t = Tally::default();
    let mut seen = vec![false; n as usize];
    let mut next = 0u64;
    while t.echoed + t.duplicated + t.corrupted < n {
        let r = tokio::time::timeout(Duration::from_secs(10), conn.receive()).await;
        let Ok(Ok(m)) = r else {
            break; // nothing for 10 s, or the Connection ended: the rest is lost
        };
        let data = m.data();
        if data.len() < HEADER
            || checksum(&data[HEADER..]) != u64::from_be_bytes(data[8..16].try_into().unwrap())
        {
            t.corrupted += 1;
            continue;
        }
        let seq = u64::from_be_bytes(data[..8].try_into().unwrap());
        if seq >= n || data[..] != message(seq)[..] {
            t.corrupted += 1;
        } else if seen[seq as usize] {
            t.duplicated += 1;
        } else {
            seen[seq as usize] = true;
            t.echoed += 1;
            if seq != next {
                t.reordered += 1;
            }
            next = seq + 1;
        }
    }
    t
}

async fn soak(
    stack: StackId,
    addr: SocketAddr,
    sec: SecurityParameters,
    n: u64,
) -> (Tally, Duration) {
    let remote = RemoteEndpoint::new().with_socket_addr(addr).unwrap();
    let mut pre = Preconnection::new(vec![], vec![remote], wants_messages(), sec);
    pre.set_protocols(vec![stack]);
    let conn = Arc::new(pre.initiate().await.expect("initiate"));
    let start = Instant::now();
    let receiver = tokio::spawn(receive_all(conn.clone(), n));
    let mut dropped = 0;
    for seq in 0..n {
        let mut fut = conn.send_message(message(seq));
        if mix(seq ^ 0x5eed) % 3 == 0 {
            // Polled once, then dropped: the Message must still go out.
            if futures::poll!(&mut fut).is_pending() {
                dropped += 1;
            }
        } else {
            fut.await.expect("Sent");
        }
    }
    let mut tally = receiver.await.expect("receiver");
    let _ = conn.close().await;
    tally.dropped_futures = dropped;
    (tally, start.elapsed())
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let failed = rt.block_on(async {
        let n = messages();
        let (pem, key) = self_signed();
        let mut server_sec = SecurityParameters::new();
        server_sec.server_certificate =
            vec![postsocket::security::Identity::from_pem(&pem, &key).expect("identity")];
        let mut client_sec = SecurityParameters::new();
        client_sec.pinned_server_certificate =
            vec![postsocket::security::certificate_sha256(&pem).expect("pin")];
        let plain = echo_listener(SecurityParameters::disabled(), vec![StackId::Tcp, StackId::Ws]).await;
        let secure = echo_listener(
            server_sec,
            vec![StackId::Tls, StackId::Quic, StackId::Wss, StackId::Wt],
        )
        .await;
        let only: Option<Vec<String>> = std::env::var("SOAK_STACKS")
            .ok()
            .map(|v| v.split(',').map(str::to_string).collect());
        let cases = [
            (StackId::Tcp, plain, SecurityParameters::disabled()),
            (StackId::Tls, secure, client_sec.clone()),
            (StackId::Quic, secure, client_sec.clone()),
            (StackId::Ws, plain, SecurityParameters::disabled()),
            (StackId::Wss, secure, client_sec.clone()),
            (StackId::Wt, secure, client_sec),
        ];
        println!("postsocket soak: {n} Messages per stack (0-1023 bytes, sequence + checksum), echoed; about a third of the send futures dropped after one poll; close at the end");
        println!(
            "{:<6} {:>9} {:>6} {:>11} {:>10} {:>10} {:>9} {:>9}",
            "stack", "echoed", "lost", "duplicated", "reordered", "corrupted", "dropped", "time"
        );
        let mut failed = false;
        for (stack, addr, sec) in cases {
            if only.as_ref().is_some_and(|o| !o.iter().any(|s| s == &stack.to_string())) {
                continue;
            }
            let (t, time) = soak(stack, addr, sec, n).await;
            let lost = n - t.echoed;
            let bad = lost + t.duplicated + t.reordered + t.corrupted;
            failed |= bad > 0;
            println!(
                "{:<6} {:>9} {:>6} {:>11} {:>10} {:>10} {:>9} {:>8.1}s {}",
                stack.to_string(),
                t.echoed,
                lost,
                t.duplicated,
                t.reordered,
                t.corrupted,
                t.dropped_futures,
                time.as_secs_f64(),
                if bad == 0 { "ok" } else { "FAILED" }
            );
        }
        failed
    });
    if failed {
        std::process::exit(1);
    }
}
