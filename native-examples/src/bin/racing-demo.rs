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
//! The scenarios live in `postsocket_examples::demo::races` (the www demo runs
//! them too). Each prints the racing trace as a timeline, the echo of one
//! message and its round-trip time. Exit code 0 when all went as expected.

use postsocket_examples::demo::races::{self, RaceReport, ATTEMPT_DELAY, SCENARIOS};
use postsocket_examples::ipv6_loopback_available;
use std::process::ExitCode;

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
    let ipv6 = ipv6_loopback_available();
    for (i, s) in SCENARIOS.iter().enumerate() {
        println!("== Scenario {}: {} ==", i + 1, s.title);
        if s.needs_ipv6 {
            if let Err(e) = &ipv6 {
                println!("IPv6 loopback (::1) is NOT available on this machine ({e}); skipped\n");
                continue;
            }
        }
        let r = races::run(*s).await?;
        print_report(&r);
        check_timing(&r)?;
        println!("=> {}\n", s.expect);
    }
    Ok(())
}

fn print_report(r: &RaceReport) {
    println!("{}\n", r.setup);
    print!("{}", r.trace.timeline());
    let to = r.remote.map(|a| format!(" to {a}")).unwrap_or_default();
    println!("Ready after {:.1} ms over {}{to}", r.ready_ms, r.stack);
    println!(
        "sent {:?}, echo {:?}, round trip {:.3} ms",
        r.message, r.echo, r.rtt_ms
    );
}

/// The attempt-delay rules the scenarios demonstrate.
fn check_timing(r: &RaceReport) -> Result<(), String> {
    let delay = ATTEMPT_DELAY.as_secs_f64() * 1e3;
    match r.scenario.name {
        "ipv6-blackholed" => {
            let v4 = r.started_ms("127.").ok_or("no IPv4 attempt in the trace")?;
            if v4 + 1.0 < delay {
                return Err(format!(
                    "IPv4 started at {v4:.1} ms, before the {delay} ms attempt delay"
                ));
            }
            println!("IPv4 started at {v4:.1} ms (attempt delay {delay} ms)");
        }
        "ipv6-refused" => {
            let v4 = r.started_ms("127.").ok_or("no IPv4 attempt in the trace")?;
            if v4 >= delay {
                return Err(format!(
                    "IPv4 started at {v4:.1} ms: it waited for the attempt delay after a refusal"
                ));
            }
            println!("IPv4 started at {v4:.1} ms, without waiting for the attempt delay");
        }
        _ => {}
    }
    Ok(())
}
