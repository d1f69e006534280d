//! Memory: can a peer make a Connection's receiver grow without bound?
//!
//! `cargo bench --bench memory` (harness = false: a plain `main`).
//!
//! Two peers that push while the application is not taking Messages:
//! - **datagram flood**: a plain quinn client (not postsocket) opens a
//!   stream to a postsocket QUIC Listener, writes the 4-byte length and 10
//!   bytes of a 1,000-byte framed Message, then sends `MEMORY_DATAGRAMS`
//!   (default 200,000) QUIC datagrams of 1,000 bytes while the Message stays
//!   incomplete and a receive waits for it; then the rest of the Message.
//! - **unread WebRTC channel**: one native WebRTC peer sends
//!   `MEMORY_WEBRTC_MB` (default 500) MB in 64 KiB Messages on a data
//!   channel whose receiving application reads nothing for
//!   `MEMORY_PAUSE_S` (default 10) seconds, then reads everything.
//!
//! Printed for each: the process's resident memory growth (the largest
//! VmRSS sampled every 10 ms, minus the one before; goal: under 64 MiB),
//! and what got through. Linux only (it reads /proc/self/status).
// Linux only (/proc); elsewhere this bench is empty.
#![cfg_attr(not(target_os = "linux"), no_main)]
#![cfg(target_os = "linux")]

use postsocket::{
    framer::LengthPrefixFramer, LocalEndpoint, Preconnection, SecurityParameters, StackId,
    TransportProperties,
};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const GOAL_MIB: f64 = 64.0;

#[path = "common/process.rs"]
#[allow(dead_code)] // each bench uses part of it
mod process;
use process::{env, rss, Sampler};

fn mib(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

fn verdict(growth: u64) -> &'static str {
    if mib(growth) < GOAL_MIB {
        "ok"
    } else {
        "MISSED"
    }
}

#[path = "../tests/common/mod.rs"]
mod common;

async fn datagram_flood() -> bool {
    let count = env("MEMORY_DATAGRAMS", 200_000);
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
        .expect("rcgen");
    let mut sec = SecurityParameters::new();
    sec.server_certificate = vec![postsocket::security::Identity::from_pem(
        &ck.cert.pem(),
        &ck.signing_key.serialize_pem(),
    )
    .expect("certificate")];
    let local = LocalEndpoint::new()
        .with_socket_addr("127.0.0.1:0".parse().unwrap())
        .unwrap();
    let mut pre = Preconnection::new(vec![local], vec![], TransportProperties::new(), sec);
    pre.add_framer(LengthPrefixFramer::new());
    pre.set_protocols(vec![StackId::Quic]);
    let listener = pre.listen().await.expect("listen");
    let addr = listener.local_addr();

    let ep = common::quinn_client(&ck.cert.pem());
    let conn = ep
        .connect(addr, "localhost")
        .unwrap()
        .await
        .expect("quinn connects");
    let (mut send, _recv) = conn.open_bi().await.unwrap();
    let mut head = 1000u32.to_be_bytes().to_vec();
    head.extend_from_slice(&[4u8; 10]);
    send.write_all(&head).await.unwrap();
    let server = listener.accept().await.expect("accepted");
    let server = Arc::new(server);
    let first = tokio::spawn({
        let server = server.clone();
        async move { server.receive().await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;

    let before = rss(None);
    let sampler = Sampler::start(None, Duration::from_millis(10));
    let started = Instant::now();
    let payload = bytes::Bytes::from(vec![7u8; 1000]);
    for _ in 0..count {
        if conn.send_datagram_wait(payload.clone()).await.is_err() {
            break;
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let growth = sampler.peak().saturating_sub(before);
    let flood_time = started.elapsed();
    send.write_all(&[4u8; 990]).await.unwrap();
    let whole = tokio::time::timeout(Duration::from_secs(10), first)
        .await
        .ok()
        .and_then(|r| r.ok())
        .and_then(|r| r.ok())
        .is_some_and(|m| m.data().len() == 1000);
    let mut kept = 0u64;
    while let Ok(Ok(_)) = tokio::time::timeout(Duration::from_millis(200), server.receive()).await {
        kept += 1;
    }
    println!(
        "datagram flood   {count} datagrams of 1,000 B in {:.1} s during an incomplete framed Message: \
         resident +{:.1} MiB (goal < {GOAL_MIB} MiB: {}); the Message then arrived {}; {kept} datagrams kept \
         (bound {}), the rest dropped and reported",
        flood_time.as_secs_f64(),
        mib(growth),
        verdict(growth),
        if whole { "whole" } else { "NOT whole" },
        postsocket::DATAGRAM_QUEUE_MAX,
    );
    conn.close(0u32.into(), b"done");
    mib(growth) < GOAL_MIB && whole
}

#[path = "../tests/common/pipe.rs"]
mod pipe;

async fn unread_webrtc_channel() -> bool {
    let total = env("MEMORY_WEBRTC_MB", 500) * 1_000_000;
    let pause = Duration::from_secs(env("MEMORY_PAUSE_S", 10));
    let len = 64 * 1024;
    let count = total.div_ceil(len as u64);
    let (offer, answer) = pipe::pair().await;
    let (sender, receiver) = (offer.connection, answer.connection);

    let before = rss(None);
    let sampler = Sampler::start(None, Duration::from_millis(10));
    let sent = Arc::new(AtomicU64::new(0));
    let progress = sent.clone();
    let started = Instant::now();
    let sending = tokio::spawn(async move {
        let m = bytes::Bytes::from(vec![9u8; len]);
        for _ in 0..count {
            if sender.send_message(m.clone()).await.is_err() {
                break;
            }
            progress.fetch_add(len as u64, Ordering::Relaxed);
        }
        sender
    });
    tokio::time::sleep(pause).await;
    let paused_growth = sampler.peak().saturating_sub(before);
    let sent_while_paused = sent.load(Ordering::Relaxed);
    let mut got = 0u64;
    while got < count * len as u64 {
        match tokio::time::timeout(Duration::from_secs(30), receiver.receive()).await {
            Ok(Ok(m)) => got += m.data().len() as u64,
            _ => break,
        }
    }
    let elapsed = started.elapsed();
    let growth = sampler.peak().saturating_sub(before);
    if let Ok(s) = sending.await {
        let _ = s.close().await;
    }
    println!(
        "unread WebRTC    {:.0} MB offered on a channel not read for {} s: {:.1} MB Sent meanwhile, \
         resident +{:.1} MiB while paused, +{:.1} MiB overall (goal < {GOAL_MIB} MiB: {}); \
         then {:.0} MB received in {:.1} s in all",
        total as f64 / 1e6,
        pause.as_secs(),
        sent_while_paused as f64 / 1e6,
        mib(paused_growth),
        mib(growth),
        verdict(growth),
        got as f64 / 1e6,
        elapsed.as_secs_f64(),
    );
    mib(growth) < GOAL_MIB && got == count * len as u64
}

#[tokio::main]
async fn main() {
    println!("postsocket memory benchmark (loopback; resident memory of this process)\n");
    let flood = datagram_flood().await;
    let webrtc = unread_webrtc_channel().await;
    if !(flood && webrtc) {
        std::process::exit(1);
    }
}
