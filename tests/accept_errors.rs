//! A Listener that runs out of file descriptors (EMFILE) while peers keep
//! connecting: its accept loop backs off instead of spinning at 100% CPU,
//! reports the error once instead of once per spin, and serves the peers
//! once descriptors are free again. Alone in its test binary: it lowers the
//! process's RLIMIT_NOFILE.
// Native Linux only (setrlimit, /proc).
#![cfg(target_os = "linux")]

mod common;
use std::time::Duration;

/// The lowest descriptor number free now: the one the next open would get
/// (a limit at it leaves no number a new descriptor could take).
fn lowest_free_fd() -> u64 {
    use std::os::fd::AsRawFd;
    let probe = std::fs::File::open("/dev/null").unwrap();
    probe.as_raw_fd() as u64
}

fn set_nofile(soft: u64) -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
    let old = lim.rlim_cur;
    lim.rlim_cur = soft;
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) }, 0);
    old
}

#[tokio::test]
async fn a_listener_out_of_file_descriptors_backs_off_and_recovers() {
    let mut pre = common::listener_pre(postsocket::TransportProperties::new());
    pre.set_protocols(vec![postsocket::StackId::Tcp]);
    let l = pre.listen().await.unwrap();
    let addr = l.local_addr();
    // The peers' sockets exist before the limit bites; connecting needs no new descriptor.
    let peers: Vec<socket2::Socket> = (0..3)
        .map(|_| socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap())
        .collect();
    let old = set_nofile(lowest_free_fd());
    for p in &peers {
        p.connect(&addr.into()).unwrap(); // the kernel completes it; accept cannot take it
    }
    let mut errors = Vec::new();
    let window = tokio::time::sleep(Duration::from_millis(700));
    tokio::pin!(window);
    loop {
        tokio::select! {
            _ = &mut window => break,
            ev = l.next_event() => match ev {
                postsocket::ListenerEvent::EstablishmentError(e) => errors.push(e.to_string()),
                postsocket::ListenerEvent::ConnectionReceived(_) => panic!("accepted without a descriptor"),
                postsocket::ListenerEvent::Stopped => panic!("stopped"),
            },
        }
        if errors.len() > 100 {
            break;
        }
    }
    set_nofile(old);
    assert!(!errors.is_empty(), "the error is reported");
    assert!(
        errors.len() <= 2,
        "{} reports in 700 ms: the accept loop spins ({:?})",
        errors.len(),
        errors.first()
    );
    assert!(errors[0].contains("back-off"), "{}", errors[0]);
    // Descriptors are back: the waiting peers are served.
    for _ in 0..3 {
        let ev = tokio::time::timeout(Duration::from_secs(5), l.next_event())
            .await
            .expect("served once descriptors are free");
        assert!(
            matches!(ev, postsocket::ListenerEvent::ConnectionReceived(_)),
            "a peer is received"
        );
    }
}
