//! PathChange natively (RFC 9622 §8.3.2): an interface address that comes
//! or goes on this machine is a `PathChange` event on every open
//! Connection, once the addresses have settled (`PATH_SETTLE`), and every
//! TransportContext still on the default network forgets what it learned on
//! the old network.
//!
//! The test moves its thread into a network namespace of its own (so it
//! needs root: `scripts/test.sh` runs it with `cargo test --test
//! path_change -- --ignored`) and changes that namespace's addresses with
//! iproute2's `ip`, as an administrator or a DHCP client would: nothing of
//! the machine's own network is touched. The peer is a plain tokio server.
#![cfg(target_os = "linux")]

use postsocket::{
    ConnectionEvent, Preconnection, RemoteEndpoint, SecurityParameters, StackId, TransportContext,
    TransportProperties, PATH_SETTLE,
};
use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

/// iproute2's `ip`, in this thread's namespace (a child inherits it).
fn ip(args: &str) {
    let status = Command::new("ip")
        .args(args.split_whitespace())
        .status()
        .expect("ip (iproute2) runs");
    assert!(status.success(), "`ip {args}` failed");
}

fn pre(addr: SocketAddr) -> Preconnection {
    let mut p = Preconnection::new(
        vec![],
        vec![RemoteEndpoint::new().with_socket_addr(addr).unwrap()],
        TransportProperties::new(),
        SecurityParameters::disabled(),
    );
    p.set_protocols(vec![StackId::Tcp]);
    p
}

/// The next event within 5 s, which must be a PathChange: its text.
async fn path_change(c: &postsocket::Connection) -> String {
    match tokio::time::timeout(Duration::from_secs(5), c.next_event()).await {
        Ok(Some(ConnectionEvent::PathChange(what))) => what,
        Ok(other) => panic!("expected a PathChange, got {other:?}"),
        Err(_) => panic!("no PathChange within 5 s"),
    }
}

#[test]
#[ignore = "needs root for a network namespace of its own; scripts/test.sh runs it: cargo test --test path_change -- --ignored"]
fn an_interface_address_that_comes_or_goes_is_a_path_change_to_every_open_connection() {
    // This thread alone moves into a new network namespace: the runtime
    // below, the watcher's netlink socket and the `ip` commands all live in
    // it. Only loopback is there.
    // SAFETY: unshare takes no pointer; it changes this thread's namespace.
    let r = unsafe { libc::unshare(libc::CLONE_NEWNET) };
    assert_eq!(
        r,
        0,
        "unshare(CLONE_NEWNET): {} (run as root)",
        std::io::Error::last_os_error()
    );
    ip("link set lo up");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let server = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = server.local_addr().unwrap();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = server.accept().await {
                held.push(s);
            }
        });
        let first = pre(addr).initiate().await.expect("connects over loopback");
        assert!(
            TransportContext::global()
                .to_json()
                .contains(&addr.to_string()),
            "the race was learned"
        );
        // A context of the application's own learns too; one on a network
        // the application named is its to manage.
        let own = TransportContext::new();
        let named = TransportContext::new();
        named.set_network("office");
        for ctx in [&own, &named] {
            let mut p = pre(addr);
            p.set_transport_context(ctx.clone());
            p.initiate().await.expect("connects").abort();
            assert!(ctx.to_json().contains(&addr.to_string()), "learned");
        }
        // The watcher started with the race; its first settled addresses
        // are its baseline, not a change.
        tokio::time::sleep(PATH_SETTLE * 2).await;
        assert!(
            tokio::time::timeout(Duration::from_millis(200), first.next_event())
                .await
                .is_err(),
            "no event before anything changed"
        );

        // An address comes (on a link left down; a link-local address would
        // not count anyway).
        ip("link add pc0 type veth peer name pc1");
        ip("addr add 10.77.0.1/24 dev pc0");
        let what = path_change(&first).await;
        assert!(
            what.contains("came: 10.77.0.1/24") && !what.contains("went"),
            "{what}"
        );
        assert!(
            !TransportContext::global()
                .to_json()
                .contains(&addr.to_string()),
            "the global context forgot what it learned on the old network"
        );
        assert!(
            !own.to_json().contains(&addr.to_string()),
            "a context made with new() forgot it too"
        );
        assert!(
            named.to_json().contains(&addr.to_string()),
            "a context on a network the application named kept its memory"
        );

        // It goes: every open Connection is told, one made since the last
        // change too; a closed one is not.
        let second = pre(addr).initiate().await.expect("connects");
        let closed = pre(addr).initiate().await.expect("connects");
        closed.abort();
        ip("addr del 10.77.0.1/24 dev pc0");
        for c in [&first, &second] {
            let what = path_change(c).await;
            assert!(
                what.contains("went: 10.77.0.1/24") && !what.contains("came"),
                "{what}"
            );
        }
        let mut after_abort = Vec::new();
        while let Ok(Some(e)) =
            tokio::time::timeout(Duration::from_millis(200), closed.next_event()).await
        {
            after_abort.push(e);
        }
        assert!(
            !after_abort
                .iter()
                .any(|e| matches!(e, ConnectionEvent::PathChange(_))),
            "an aborted Connection is not told: {after_abort:?}"
        );
        // An application's own signal reaches the same two (the aborted
        // one is not counted).
        assert_eq!(postsocket::path_changed("the application's own signal"), 2);
        for c in [&first, &second] {
            assert_eq!(path_change(c).await, "the application's own signal");
        }
        // One more change from the platform, after the aborted Connection
        // is dropped, reaches the two open ones.
        drop(closed);
        ip("addr add 10.88.0.1/24 dev pc0");
        for c in [&first, &second] {
            assert!(path_change(c).await.contains("came: 10.88.0.1/24"));
        }

        // IPv6: an address in a new /64 is a change; a second one in that
        // /64 (a privacy address rotating in) is not, nor its going.
        ip("-6 addr add 2001:db8:5:6::7/64 dev pc0 nodad");
        for c in [&first, &second] {
            assert!(path_change(c).await.contains("came: 2001:db8:5:6::7/64"));
        }
        ip("-6 addr add 2001:db8:5:6:a1b2:c3d4:e5f6:1/64 dev pc0 nodad");
        no_event_for(&first, PATH_SETTLE * 3).await;
        ip("-6 addr del 2001:db8:5:6:a1b2:c3d4:e5f6:1/64 dev pc0");
        no_event_for(&first, PATH_SETTLE * 3).await;

        // The application stops watching the platform: a change is not
        // reported, its own signal still is.
        assert_eq!(watcher_threads(), 1, "one watcher runs");
        postsocket::watch_platform_paths(false);
        assert_eq!(
            watcher_threads_soon(0).await,
            0,
            "the watcher's thread ended"
        );
        ip("addr add 10.99.0.1/24 dev pc0");
        no_event_for(&first, PATH_SETTLE * 3).await;
        assert_eq!(postsocket::path_changed("the application's own signal"), 2);
        assert_eq!(path_change(&first).await, "the application's own signal");
        // Watching again: what changed while off is the new baseline, the
        // next change is reported.
        postsocket::watch_platform_paths(true);
        assert_eq!(watcher_threads_soon(1).await, 1, "a new watcher runs");
        no_event_for(&first, PATH_SETTLE * 3).await;
        ip("addr add 10.111.0.1/24 dev pc0");
        let what = path_change(&first).await;
        assert!(
            what.contains("came: 10.111.0.1/24") && !what.contains("10.99.0.1"),
            "{what}"
        );
    });
}

/// How many threads of this process are the path watcher's (named
/// `postsocket-path-watch`; Linux keeps the first 15 bytes of a name).
fn watcher_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|name| name.trim_end() == "postsocket-path")
        .count()
}

/// [`watcher_threads`] once it is `n`, or after 2 s (a thread names itself
/// as it starts, and ends a little after it is told to).
async fn watcher_threads_soon(n: usize) -> usize {
    for _ in 0..100 {
        if watcher_threads() == n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    watcher_threads()
}

/// No event on `c` for `d`.
async fn no_event_for(c: &postsocket::Connection, d: Duration) {
    if let Ok(e) = tokio::time::timeout(d, c.next_event()).await {
        panic!("expected no event, got {e:?}");
    }
}
