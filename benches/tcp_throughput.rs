//! TCP throughput and time to Ready: postsocket against raw tokio, side by side.
//!
//! `cargo bench --bench tcp_throughput` (harness = false: a plain `main`).
//!
//! Throughput: a client sends N Messages to a loopback server that receives
//! them all, both sending one payload buffer over and over (postsocket as a
//! shared `Bytes`), with the same framing on both sides (4-byte big-endian length,
//! then the body): postsocket's `LengthPrefixFramer` against a raw tokio
//! `TcpStream` (header and body in one vectored write per message; the server
//! reads with `read_exact` through a 64 KiB `BufReader`). TCP_NODELAY on both.
//! `RAW_COMBINED=1` makes the raw side copy header and body into one buffer
//! and `write_all` it instead.
//! Each case runs 15 times (`BENCH_RUNS`), alternating which side goes
//! first; each run is paired with the other side's next to it, and the median
//! of the pairs' ratios counts (`BENCH_VERBOSE=1` prints every run).
//!
//! Time to Ready: `initiate()` to one 127.0.0.1 endpoint, TCP only, against
//! `TcpStream::connect` plus `set_nodelay(true)` (postsocket's TCP default),
//! median of 200 each, alternating.
// Native only (sockets, tokio); on wasm32 this bench is empty.
#![cfg_attr(all(target_arch = "wasm32", target_os = "unknown"), no_main)]
#![cfg(not(all(target_arch = "wasm32", target_os = "unknown")))]

mod common;

use common::{median, runs, verdict, Paired};
use postsocket::framer::LengthPrefixFramer;
use postsocket::{
    LocalEndpoint, Preconnection, RemoteEndpoint, SecurityParameters, StackId, TransportProperties,
};
use std::io::IoSlice;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

const CONNECTS: usize = 200;
/// Connects per side when profiling (`BENCH_CONNECTS`).
fn connects() -> usize {
    common::env_number("BENCH_CONNECTS", CONNECTS)
}

struct Case {
    name: &'static str,
    size: usize,
    count: usize,
    /// postsocket/raw throughput ratio to meet.
    target: f64,
}

const CASES: [Case; 3] = [
    // Past DIRECT_FIRST_RESERVE (1 MiB): the body's buffer grows as it
    // arrives, where the raw side allocates the whole body at once.
    Case {
        name: "4 MiB",
        size: 4 * 1024 * 1024,
        count: 128,
        target: 0.95,
    },
    Case {
        name: "64 KiB",
        size: 64 * 1024,
        count: 8192,
        target: 0.95,
    },
    Case {
        name: "64 B",
        size: 64,
        count: 200_000,
        target: 0.90,
    },
];

/// Time to Ready: postsocket/raw ratio to stay under.
const READY_TARGET: f64 = 1.2;

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(run());
}

fn localhost(port: u16) -> SocketAddr {
    SocketAddr::new(Ipv4Addr::LOCALHOST.into(), port)
}

fn framed_preconnection(remote: Option<SocketAddr>, local: Option<SocketAddr>) -> Preconnection {
    let locals = local
        .map(|a| {
            vec![LocalEndpoint::new()
                .with_socket_addr(a)
                .expect("local endpoint")]
        })
        .unwrap_or_default();
    let remotes = remote
        .map(|a| {
            vec![RemoteEndpoint::new()
                .with_socket_addr(a)
                .expect("remote endpoint")]
        })
        .unwrap_or_default();
    let mut pre = Preconnection::new(
        locals,
        remotes,
        TransportProperties::new(),
        SecurityParameters::disabled(),
    );
    pre.set_protocols(vec![StackId::Tcp]);
    pre.add_framer(LengthPrefixFramer::new());
    pre
}

/// One postsocket run: seconds from the first send until the server has received every message.
async fn postsocket_run(size: usize, count: usize) -> f64 {
    let listener = framed_preconnection(None, Some(localhost(0)))
        .listen()
        .await
        .expect("postsocket listen");
    let addr = listener.local_addr();
    let server = tokio::spawn(async move {
        let conn = listener.accept().await.expect("accept");
        let mut bytes = 0usize;
        for _ in 0..count {
            let msg = conn.receive().await.expect("receive");
            assert!(msg.is_end_of_message());
            bytes += msg.data().len();
        }
        let done = Instant::now();
        assert_eq!(bytes, size * count);
        conn.abort();
        done
    });
    let conn = framed_preconnection(Some(addr), None)
        .initiate()
        .await
        .expect("postsocket initiate");
    // One shared buffer, sent again and again as the raw side writes its
    // own: `Bytes` clones share it (a `Vec` would be copied each time).
    let payload = postsocket::Bytes::from(vec![0x5a_u8; size]);
    let start = Instant::now();
    for _ in 0..count {
        conn.send_message(payload.clone())
            .await
            .expect("postsocket send");
    }
    let done = server.await.expect("server task");
    conn.abort();
    (done - start).as_secs_f64()
}

/// One raw tokio run with the same framing.
async fn raw_run(size: usize, count: usize) -> f64 {
    let listener = TcpListener::bind(localhost(0)).await.expect("raw bind");
    let addr = listener.local_addr().expect("raw addr");
    let server = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.expect("raw accept");
        stream.set_nodelay(true).expect("nodelay");
        let mut rd = BufReader::with_capacity(64 * 1024, stream);
        let mut bytes = 0usize;
        for _ in 0..count {
            let mut header = [0u8; 4];
            rd.read_exact(&mut header).await.expect("raw header");
            let len = u32::from_be_bytes(header) as usize;
            let mut body = vec![0u8; len];
            rd.read_exact(&mut body).await.expect("raw body");
            bytes += body.len();
        }
        let done = Instant::now();
        assert_eq!(bytes, size * count);
        done
    });
    let mut stream = TcpStream::connect(addr).await.expect("raw connect");
    stream.set_nodelay(true).expect("nodelay");
    let payload = vec![0x5a_u8; size];
    let start = Instant::now();
    for _ in 0..count {
        let header = (size as u32).to_be_bytes();
        if std::env::var_os("RAW_COMBINED").is_some() {
            let mut frame = Vec::with_capacity(4 + size);
            frame.extend_from_slice(&header);
            frame.extend_from_slice(&payload);
            stream.write_all(&frame).await.expect("raw write");
        } else {
            write_frame(&mut stream, &header, &payload).await;
        }
    }
    let done = server.await.expect("server task");
    (done - start).as_secs_f64()
}

/// Header and body with vectored writes (no copy into one buffer), as a
/// framer hands the socket one frame; loops over short writes.
async fn write_frame(stream: &mut TcpStream, header: &[u8], body: &[u8]) {
    let total = header.len() + body.len();
    let mut written = 0;
    while written < total {
        let n = if written < header.len() {
            let bufs = [IoSlice::new(&header[written..]), IoSlice::new(body)];
            stream.write_vectored(&bufs).await
        } else {
            stream.write(&body[written - header.len()..]).await
        }
        .expect("raw write");
        assert!(n > 0, "raw write returned 0");
        written += n;
    }
}

async fn run() {
    let started = Instant::now();
    println!(
        "postsocket TCP benchmark (loopback, length-prefix framing, median of {} paired runs)\n",
        runs()
    );
    println!(
        "{:<8} {:>8} {:>12} {:>12} {:>14} {:>14} {:>8} {:>8}",
        "message", "count", "raw MB/s", "ps MB/s", "raw msgs/s", "ps msgs/s", "ratio", "target"
    );
    // BENCH_ONLY=ready skips the throughput cases (for profiling establishment).
    let only_ready = std::env::var("BENCH_ONLY").is_ok_and(|v| v == "ready");
    for case in CASES.iter().filter(|_| !only_ready) {
        let mut ps = Vec::new();
        let mut raw = Vec::new();
        for i in 0..runs() {
            // Alternate which side goes first.
            if i % 2 == 0 {
                raw.push(raw_run(case.size, case.count).await);
                ps.push(postsocket_run(case.size, case.count).await);
            } else {
                ps.push(postsocket_run(case.size, case.count).await);
                raw.push(raw_run(case.size, case.count).await);
            }
        }
        let runs = Paired { raw, ps };
        runs.print_runs(case.size * case.count);
        let (ratio, lo, hi) = runs.ratio();
        let (raw, ps) = runs.medians();
        let bytes = (case.size * case.count) as f64;
        println!(
            "{:<8} {:>8} {:>12.1} {:>12.1} {:>14.0} {:>14.0} {:>7.3}x {:>5}{:.2}x {} (pairs {lo:.2}-{hi:.2})",
            case.name,
            case.count,
            bytes / raw / 1e6,
            bytes / ps / 1e6,
            case.count as f64 / raw,
            case.count as f64 / ps,
            ratio,
            ">=",
            case.target,
            verdict(ratio >= case.target)
        );
    }

    // Time to Ready.
    let listener = TcpListener::bind(localhost(0)).await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let acceptor = tokio::spawn(async move {
        // Accept and drop: only the handshake matters.
        while let Ok((s, _)) = listener.accept().await {
            drop(s);
        }
    });
    // TCP only, one 127.0.0.1 endpoint, no framer.
    let mut pre = Preconnection::new(
        Vec::new(),
        vec![RemoteEndpoint::new()
            .with_socket_addr(addr)
            .expect("remote endpoint")],
        TransportProperties::new(),
        SecurityParameters::disabled(),
    );
    pre.set_protocols(vec![StackId::Tcp]);
    let n = connects();
    let mut ps = Vec::with_capacity(n);
    let mut raw = Vec::with_capacity(n);
    for i in 0..n * 2 {
        if (i % 2 == 0) == (i / 2 % 2 == 0) {
            let t = Instant::now();
            // The same socket options as postsocket's TCP default (TCP_NODELAY).
            let s = TcpStream::connect(addr).await.expect("raw connect");
            s.set_nodelay(true).expect("nodelay");
            raw.push(t.elapsed().as_secs_f64());
            drop(s);
        } else {
            let t = Instant::now();
            let c = pre.initiate().await.expect("postsocket initiate");
            ps.push(t.elapsed().as_secs_f64());
            // Dropped like the raw stream (both close the socket).
            drop(c);
        }
    }
    acceptor.abort();
    let (ps, raw) = (median(ps), median(raw));
    let ratio = ps / raw;
    println!(
        "\ntime to Ready (median of {CONNECTS}): raw connect {:.1} µs, postsocket initiate {:.1} µs, ratio {:.2}x (target <={READY_TARGET:.1}x) {}",
        raw * 1e6,
        ps * 1e6,
        ratio,
        verdict(ratio <= READY_TARGET)
    );
    println!(
        "\ntotal benchmark time {:.1} s",
        started.elapsed().as_secs_f64()
    );
    // Give aborted sockets a moment to go away before the runtime shuts down.
    tokio::time::sleep(Duration::from_millis(10)).await;
}
