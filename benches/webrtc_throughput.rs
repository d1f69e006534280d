//! WebRTC data channel throughput: postsocket against raw str0m, side by side.
//!
//! `cargo bench --bench webrtc_throughput` (harness = false: a plain `main`).
//!
//! One data channel over loopback carries `WEBRTC_MB` (default 16) MB in
//! 64 KiB Messages from the offerer to the answerer, timed from when the
//! channel is open until the answerer has every byte.
//! - **raw str0m**: two `Rtc`s, each driven by the loop str0m's docs show
//!   (wait for one datagram or timeout, feed it, drain the output), on a
//!   tokio UDP socket; the sender writes the next Message whenever the
//!   channel takes it. SCTP send buffer 1 MiB, as postsocket's.
//! - **postsocket**: a Connection pair from `Preconnection::rendezvous` over
//!   an in-process signaling pipe; `send_message` in a loop against
//!   `receive` in a loop.
//!
//! Each side runs `BENCH_RUNS` (default 15) times, alternating which goes
//! first; the median of the pairs' ratios is printed (postsocket's
//! throughput over raw str0m's). Both sides use the same str0m build, so
//! the ratio is what postsocket's driver and Connection cost or save.
//!
//! Single runs are bimodal on a small machine: when the receiver falls
//! behind, the kernel drops datagrams and SCTP waits out retransmission
//! timeouts (str0m's SCTP has no burst limit), on either side. The pairs'
//! spread is wide: compare medians over several invocations.
// Native only (sockets, tokio); on wasm32 this bench is empty.
#![cfg_attr(all(target_arch = "wasm32", target_os = "unknown"), no_main)]
#![cfg(not(all(target_arch = "wasm32", target_os = "unknown")))]

mod common;

#[path = "../tests/common/pipe.rs"]
mod pipe;

use common::{runs, verdict, Paired};
use std::time::{Duration, Instant};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc};
use tokio::net::UdpSocket;
use tokio::sync::oneshot;

const MSG: usize = 64 * 1024;
/// postsocket/raw throughput ratio to meet.
const TARGET: f64 = 0.8;
/// No run may take longer than this (it then fails the bench).
const RUN_MAX: Duration = Duration::from_secs(120);

fn total_bytes() -> usize {
    (common::env_number("WEBRTC_MB", 16) * 1_000_000).div_ceil(MSG) * MSG
}

/// A raw str0m peer: an `Rtc` with its loopback socket and host candidate.
fn raw_peer() -> (Rtc, std::net::UdpSocket) {
    str0m::crypto::from_feature_flags().install_process_default();
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    socket.set_nonblocking(true).expect("non-blocking");
    let mut rtc = Rtc::builder()
        .set_sctp_max_buffered_amount(1 << 20)
        .build(Instant::now());
    let local = socket.local_addr().expect("local address");
    rtc.add_local_candidate(Candidate::host(local, "udp").expect("host candidate"));
    (rtc, socket)
}

/// What a raw peer does once its channel is open.
enum Role {
    /// Write this many Messages, saying when the channel opened.
    Send(usize, oneshot::Sender<Instant>),
    /// Read this many bytes, then say so.
    Receive(usize, oneshot::Sender<Instant>),
}

/// str0m's documented loop: one input, then drain the output to Timeout.
async fn raw_drive(mut rtc: Rtc, socket: std::net::UdpSocket, role: Role) {
    let socket = UdpSocket::from_std(socket).expect("tokio socket");
    let local = socket.local_addr().expect("local address");
    let msg = vec![7u8; MSG];
    let mut buf = vec![0u8; 2048];
    let mut channel = None;
    let (mut to_send, mut opened, mut to_read, mut done) = match role {
        Role::Send(n, tx) => (n, Some(tx), 0, None),
        Role::Receive(n, tx) => (0, None, n, Some(tx)),
    };
    loop {
        let deadline = loop {
            match rtc.poll_output().expect("poll_output") {
                Output::Timeout(t) => break t,
                Output::Transmit(t) => {
                    let _ = socket.send_to(&t.contents, t.destination).await;
                }
                Output::Event(Event::ChannelOpen(id, _)) => {
                    channel = Some(id);
                    if let Some(tx) = opened.take() {
                        let _ = tx.send(Instant::now());
                    }
                }
                Output::Event(Event::ChannelData(d)) => {
                    to_read = to_read.saturating_sub(d.data.len());
                    if to_read == 0 {
                        if let Some(tx) = done.take() {
                            let _ = tx.send(Instant::now());
                        }
                    }
                }
                Output::Event(_) => {}
            }
        };
        // A write is a mutation too: one, then drain again.
        if to_send > 0 {
            if let Some(mut ch) = channel.and_then(|id| rtc.channel(id)) {
                if ch.write(true, &msg).expect("write") {
                    to_send -= 1;
                    continue;
                }
            }
        }
        let wait = deadline.saturating_duration_since(Instant::now());
        tokio::select! {
            r = socket.recv_from(&mut buf) => {
                let Ok((n, source)) = r else { continue };
                let Ok(contents) = buf[..n].try_into() else { continue };
                let input = Input::Receive(Instant::now(), Receive {
                    proto: Protocol::Udp,
                    source,
                    destination: local,
                    contents,
                });
                if rtc.accepts(&input) {
                    rtc.handle_input(input).expect("input");
                }
            }
            _ = tokio::time::sleep(wait) => {
                rtc.handle_input(Input::Timeout(Instant::now())).expect("timeout");
            }
        }
    }
}

/// One raw str0m transfer: seconds from the channel's opening to the last byte.
async fn raw_run(total: usize) -> f64 {
    let (mut a, a_socket) = raw_peer();
    let (mut b, b_socket) = raw_peer();
    let mut api = a.sdp_api();
    api.add_channel("bench".into());
    let (offer, pending) = api.apply().expect("an offer");
    let answer = b.sdp_api().accept_offer(offer).expect("an answer");
    a.sdp_api()
        .accept_answer(pending, answer)
        .expect("answer taken");
    let (open_tx, open_rx) = oneshot::channel();
    let (done_tx, done_rx) = oneshot::channel();
    let sender = tokio::spawn(raw_drive(a, a_socket, Role::Send(total / MSG, open_tx)));
    let receiver = tokio::spawn(raw_drive(b, b_socket, Role::Receive(total, done_tx)));
    let timed = tokio::time::timeout(RUN_MAX, async {
        let opened = open_rx.await.expect("the channel opens");
        let done = done_rx.await.expect("every byte arrives");
        done - opened
    })
    .await
    .expect("a raw str0m run within RUN_MAX");
    sender.abort();
    receiver.abort();
    timed.as_secs_f64()
}

/// One postsocket transfer: seconds from Ready to the last byte received.
async fn postsocket_run(total: usize) -> f64 {
    let (offer, answer) = pipe::pair().await;
    let (sender, receiver) = (offer.connection, answer.connection);
    let timed = tokio::time::timeout(RUN_MAX, async {
        let started = Instant::now();
        let sending = tokio::spawn(async move {
            let m = bytes::Bytes::from(vec![7u8; MSG]);
            for _ in 0..total / MSG {
                sender.send_message(m.clone()).await.expect("Sent");
            }
            sender
        });
        let mut got = 0;
        while got < total {
            got += receiver.receive().await.expect("a Message").data().len();
        }
        let elapsed = started.elapsed();
        sending.await.unwrap().abort();
        elapsed
    })
    .await
    .expect("a postsocket run within RUN_MAX");
    receiver.abort();
    timed.as_secs_f64()
}

#[tokio::main]
async fn main() {
    let total = total_bytes();
    let runs = runs();
    println!(
        "WebRTC data channel throughput over loopback: {:.0} MB in 64 KiB Messages, \
         {runs} runs each, postsocket against raw str0m\n",
        total as f64 / 1e6
    );
    let mut p = Paired {
        raw: Vec::new(),
        ps: Vec::new(),
    };
    // A first pair warms both up (crypto set-up, the allocator); not counted.
    raw_run(total.min(1 << 20)).await;
    postsocket_run(total.min(1 << 20)).await;
    for i in 0..runs {
        if i % 2 == 0 {
            p.raw.push(raw_run(total).await);
            p.ps.push(postsocket_run(total).await);
        } else {
            p.ps.push(postsocket_run(total).await);
            p.raw.push(raw_run(total).await);
        }
    }
    p.print_runs(total);
    let (raw, ps) = p.medians();
    let (ratio, lo, hi) = p.ratio();
    let mbps = |t: f64| total as f64 / t / 1e6;
    println!(
        "64 KiB Messages  raw str0m {:6.1} MB/s   postsocket {:6.1} MB/s   ratio {ratio:.2}x \
         (pairs {lo:.2}-{hi:.2}; goal >= {TARGET}x) {}",
        mbps(raw),
        mbps(ps),
        verdict(ratio >= TARGET),
    );
}
