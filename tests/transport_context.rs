//! The TransportContext over real loopback sockets: with IPv6 blackholed
//! (a `[::1]` port whose accept queue is full drops SYNs silently), the
//! first connect waits the attempt delay and later ones go straight to
//! IPv4; Save and Restore carry that into a new process; a corrupt or
//! foreign file is reported and ignored; isolateSession keeps a race out.
// Native only (sockets, files, processes).
#![cfg(not(all(target_arch = "wasm32", target_os = "unknown")))]

mod common;
use common::*;
use postsocket::framer::DelimiterFramer;
use postsocket::racing::Family;
use postsocket::{
    Connection, ErrorReason, Preconnection, RemoteEndpoint, SecurityParameters, StaticResolver,
    TraceEventKind as K, TransportContext, TransportProperties,
};
use std::net::IpAddr;
use std::time::Duration;

const HOST: &str = "server.test";

/// A line-framed TCP Preconnection to `server.test:port`, which resolves to
/// `::1` and `127.0.0.1` at once.
fn to_server(port: u16, props: TransportProperties, ctx: &TransportContext) -> Preconnection {
    let remote = RemoteEndpoint::new()
        .with_host_name(HOST)
        .unwrap()
        .with_port(port)
        .unwrap();
    let mut p = Preconnection::new(vec![], vec![remote], props, SecurityParameters::disabled());
    p.add_framer(DelimiterFramer::line());
    let v6: IpAddr = "::1".parse().unwrap();
    let v4: IpAddr = "127.0.0.1".parse().unwrap();
    p.set_resolver(
        StaticResolver::new()
            .answer(Family::V6, vec![v6], Duration::ZERO)
            .answer(Family::V4, vec![v4], Duration::ZERO),
    );
    p.set_transport_context(ctx.clone());
    p
}

/// The address of the leaf whose attempt started first, and every address started.
fn started(conn: &Connection) -> Vec<String> {
    let t = conn.trace();
    t.of_kind(K::AttemptStarted)
        .map(|e| t.candidate(&e.id).unwrap().address.clone().unwrap())
        .collect()
}

fn won_ms(conn: &Connection) -> f64 {
    conn.trace().of_kind(K::Won).next().unwrap().t_ms
}

/// Connect, check the echo, close; the Connection is returned closed.
async fn connect(pre: &Preconnection) -> Connection {
    let conn = pre.initiate().await.expect("IPv4 serves");
    conn.send_message("ping").await.unwrap();
    assert_eq!(conn.receive().await.unwrap().data(), b"ping");
    conn.close().await.unwrap();
    conn
}

/// The first race pays the attempt delay: IPv6 first, IPv4 after 250 ms.
async fn first_race(pre: &Preconnection, v6: &str, v4: &str) {
    let c = connect(pre).await;
    assert_eq!(started(&c), [v6, v4], "{}", c.trace().timeline());
    assert!(won_ms(&c) >= 250.0, "{}", c.trace().timeline());
}

/// A later race goes straight to IPv4: IPv6, which stayed silent last
/// time, waits for the A answer and comes after it; it never starts.
fn straight_to_v4(c: &Connection, v4: &str) {
    let t = c.trace();
    assert_eq!(started(c), [v4], "{}", t.timeline());
    assert!(
        t.of_kind(K::Reordered).any(|e| e
            .reason
            .as_deref()
            .unwrap()
            .contains("later: it failed or stayed silent")),
        "{}",
        t.timeline()
    );
    assert!(
        t.of_kind(K::Reordered)
            .any(|e| e.reason.as_deref().unwrap().contains("first: it worked")),
        "{}",
        t.timeline()
    );
}

#[tokio::test]
async fn with_ipv6_blackholed_later_connects_go_straight_to_ipv4() {
    let (bh, v4) = blackhole_v6_serving_v4().await;
    let (v6s, v4s) = (bh.addr.to_string(), v4.to_string());
    let ctx = TransportContext::new();
    let pre = to_server(v4.port(), TransportProperties::new(), &ctx);
    first_race(&pre, &v6s, &v4s).await;
    let mut times = Vec::new();
    for _ in 2..=6 {
        let c = connect(&pre).await;
        straight_to_v4(&c, &v4s);
        times.push(won_ms(&c));
    }
    eprintln!("time to Ready of connects 2..6, ms: {times:?}");
    // Another Preconnection with the same context learns the same.
    let c = connect(&to_server(v4.port(), TransportProperties::new(), &ctx)).await;
    straight_to_v4(&c, &v4s);
    // A context of its own starts fresh.
    let fresh = TransportContext::new();
    first_race(
        &to_server(v4.port(), TransportProperties::new(), &fresh),
        &v6s,
        &v4s,
    )
    .await;
}

#[tokio::test]
async fn isolate_session_neither_uses_nor_teaches_the_context() {
    let (bh, v4) = blackhole_v6_serving_v4().await;
    let (v6s, v4s) = (bh.addr.to_string(), v4.to_string());
    let ctx = TransportContext::new();
    let mut props = TransportProperties::new();
    props.set("isolateSession", true).unwrap();
    let isolated = to_server(v4.port(), props, &ctx);
    first_race(&isolated, &v6s, &v4s).await;
    first_race(&isolated, &v6s, &v4s).await;
    assert!(!ctx.to_json().contains(&v4s), "nothing learned");
    // Taught by an ordinary race, the isolated one still ignores it.
    let plain = to_server(v4.port(), TransportProperties::new(), &ctx);
    first_race(&plain, &v6s, &v4s).await;
    first_race(&isolated, &v6s, &v4s).await;
    straight_to_v4(&connect(&plain).await, &v4s);
}

const CHILD_FILE: &str = "POSTSOCKET_TEST_CONTEXT_FILE";
const CHILD_PORT: &str = "POSTSOCKET_TEST_CONTEXT_PORT";

#[tokio::test]
async fn save_then_restore_in_a_new_process_keeps_what_was_learned() {
    let (bh, v4) = blackhole_v6_serving_v4().await;
    let dir = std::env::temp_dir().join(format!("postsocket-ctx-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("context.json");
    let ctx = TransportContext::new();
    assert!(
        !ctx.restore(file.to_str().unwrap()).unwrap(),
        "no file yet: a first run"
    );
    first_race(
        &to_server(v4.port(), TransportProperties::new(), &ctx),
        &bh.addr.to_string(),
        &v4.to_string(),
    )
    .await;
    ctx.save(file.to_str().unwrap()).unwrap();
    let saved = std::fs::read_to_string(&file).unwrap();
    assert!(saved.contains("\"format\":\"postsocket-transport-context\""));
    let leftovers: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
    assert_eq!(leftovers.len(), 1, "the temporary file was renamed over it");

    // A new process restores it and goes straight to IPv4 (the servers stay
    // up in this one meanwhile).
    let exe = std::env::current_exe().unwrap();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(exe)
            .args([
                "--exact",
                "child_process_restores_the_saved_context",
                "--nocapture",
            ])
            .env(CHILD_FILE, &file)
            .env(CHILD_PORT, v4.port().to_string())
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the child failed:\n{text}");
    assert!(text.contains("1 passed"), "the child ran its test:\n{text}");
    assert!(
        text.contains("restored and went straight to IPv4"),
        "{text}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The second half of the test above, run by it in a new process (it does
/// nothing when run on its own).
#[tokio::test]
async fn child_process_restores_the_saved_context() {
    let (Ok(file), Ok(port)) = (std::env::var(CHILD_FILE), std::env::var(CHILD_PORT)) else {
        return;
    };
    let ctx = TransportContext::new();
    assert!(ctx.restore(&file).unwrap(), "the file is there");
    let port: u16 = port.parse().unwrap();
    let c = connect(&to_server(port, TransportProperties::new(), &ctx)).await;
    straight_to_v4(&c, &format!("127.0.0.1:{port}"));
    eprintln!("restored and went straight to IPv4");
}

#[tokio::test]
async fn a_corrupt_or_foreign_file_is_reported_and_ignored() {
    let (bh, v4) = blackhole_v6_serving_v4().await;
    let (v6s, v4s) = (bh.addr.to_string(), v4.to_string());
    let dir = std::env::temp_dir().join(format!("postsocket-ctx-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ctx = TransportContext::new();
    let pre = to_server(v4.port(), TransportProperties::new(), &ctx);
    first_race(&pre, &v6s, &v4s).await;
    let good = ctx.to_json();
    for (name, text, expect) in [
        (
            "garbage.json",
            "\u{0}\u{1}not json at all".to_string(),
            "not JSON",
        ),
        (
            "foreign.json",
            "{\"format\": \"other-app\", \"version\": 1}".to_string(),
            "its format is `other-app`",
        ),
        (
            "future.json",
            good.replace("\"version\":1", "\"version\":9"),
            "it is version 9",
        ),
        ("cut.json", good[..good.len() / 3].to_string(), "not JSON"),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        ctx.restore_json(&good).unwrap();
        let e = ctx.restore(path.to_str().unwrap()).unwrap_err();
        assert_eq!(e.reason, ErrorReason::InvalidConfiguration);
        let msg = e.to_string();
        assert!(
            msg.contains(path.to_str().unwrap()) && msg.contains(expect),
            "{name}: {msg}"
        );
        assert_eq!(
            ctx.to_json(),
            TransportContext::new().to_json(),
            "fresh after {name}"
        );
        // Racing goes on, as a fresh race.
        first_race(&pre, &v6s, &v4s).await;
    }
    // A directory where a file should be: an error too, not a panic.
    let e = ctx.restore(dir.to_str().unwrap()).unwrap_err();
    assert!(e.to_string().contains("cannot restore"), "{e}");
    let e = ctx.save(dir.to_str().unwrap()).unwrap_err();
    assert!(e.to_string().contains("cannot save"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Saves are atomic even when threads of one process save to the same file
/// at once: 8 threads save 50 times each, every save succeeds, and a reader
/// meanwhile always finds a whole TransportContext (each save writes a
/// temporary file of its own, then renames it; they shared one before, so
/// a save could truncate another's file after its rename, or fail). A file
/// larger than any TransportContext is refused without being read whole.
#[test]
fn concurrent_saves_leave_a_whole_file_and_a_huge_one_is_refused() {
    let dir = std::env::temp_dir().join(format!("postsocket-ctx-saves-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("ctx.json");
    let path = file.to_str().unwrap().to_string();
    let ctx = TransportContext::new();
    ctx.save(&path).unwrap();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (path, done) = (path.clone(), done.clone());
        std::thread::spawn(move || {
            let mut reads = 0;
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                let text = std::fs::read_to_string(&path).expect("the file is always there");
                TransportContext::new()
                    .restore_json(&text)
                    .unwrap_or_else(|e| panic!("a save left {} bytes: {e}", text.len()));
                reads += 1;
            }
            reads
        })
    };
    let savers: Vec<_> = (0..8)
        .map(|_| {
            let (ctx, path) = (ctx.clone(), path.clone());
            std::thread::spawn(move || {
                for _ in 0..50 {
                    ctx.save(&path).expect("every save succeeds");
                }
            })
        })
        .collect();
    for s in savers {
        s.join().unwrap();
    }
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    assert!(reader.join().unwrap() > 0);
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n != "ctx.json")
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");

    let huge = dir.join("huge.json");
    let f = std::fs::File::create(&huge).unwrap();
    f.set_len(64 << 20).unwrap(); // sparse: 64 MiB of zeros
    let e = ctx.restore(huge.to_str().unwrap()).unwrap_err();
    assert!(e.to_string().contains("larger than"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}
