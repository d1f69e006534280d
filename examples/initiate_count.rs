//! A harness for counting the CPU work of one `Preconnection::initiate()`
//! under callgrind (load-independent, unlike the timed benches):
//!
//! ```text
//! cargo build --release --example initiate_count
//! valgrind --tool=callgrind target/release/examples/initiate_count tcp 200
//! valgrind --tool=callgrind target/release/examples/initiate_count tcp 400
//! ```
//!
//! The difference of the two totals, over the difference of N, is the cost
//! of one initiate (setup, the listener and the runtime cancel out).
//! Modes: `tcp` (one 127.0.0.1 endpoint, TCP only, as the time to Ready of
//! benches/tcp_throughput.rs; `INITIATE_PRIOR=M` first connects once to M
//! other servers, so that the default TransportContext remembers them), `raw` (tokio's connect + TCP_NODELAY, the
//! baseline), `context` (a name resolving to `::1`, blackholed, and
//! 127.0.0.1, with a TransportContext and a line framer, as the later
//! connects of benches/transport_context.rs; the first connect, which waits
//! for the attempt delay, is part of the setup). `INITIATE_MT=1` runs the loop
//! as the timed benches do: in `block_on` beside a two-worker runtime, so
//! that a connect's wake crosses threads.

#[cfg(not(all(target_arch = "wasm32", target_os = "unknown")))]
fn main() {
    native::main();
}

#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
fn main() {}

#[cfg(not(all(target_arch = "wasm32", target_os = "unknown")))]
mod native {
    use postsocket::framer::DelimiterFramer;
    use postsocket::racing::Family;
    use postsocket::{
        Preconnection, RemoteEndpoint, SecurityParameters, StackId, StaticResolver,
        TransportContext, TransportProperties,
    };
    use std::net::{IpAddr, SocketAddr};
    use std::time::Duration;
    use tokio::net::{TcpListener, TcpStream};

    pub fn main() {
        let mut args = std::env::args().skip(1);
        let mode = args.next().unwrap_or_else(|| "tcp".into());
        let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(100);
        // INITIATE_MT=1: a multi-thread runtime with two workers, as the
        // timed benches use (the loop runs in `block_on`, off the workers).
        let rt = if std::env::var_os("INITIATE_MT").is_some() {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
        } else {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
        }
        .expect("runtime");
        rt.block_on(run(&mode, n));
    }

    async fn run(mode: &str, n: usize) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        // Accept and drop: only the handshake matters.
        let acceptor = tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                drop(s);
            }
        });
        match mode {
            "raw" => {
                for _ in 0..n {
                    let s = TcpStream::connect(addr).await.expect("raw connect");
                    s.set_nodelay(true).expect("nodelay");
                    drop(s);
                }
            }
            "tcp" => {
                // INITIATE_PRIOR=M: first connect once to each of M other
                // servers, so the default TransportContext remembers M more
                // destinations (as in a process that talks to many).
                let prior: usize = std::env::var("INITIATE_PRIOR")
                    .ok()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                for _ in 0..prior {
                    let other = TcpListener::bind("127.0.0.1:0").await.expect("bind");
                    let at = other.local_addr().expect("addr");
                    let mut pre = Preconnection::new(
                        Vec::new(),
                        vec![RemoteEndpoint::new().with_socket_addr(at).expect("remote")],
                        TransportProperties::new(),
                        SecurityParameters::disabled(),
                    );
                    pre.set_protocols(vec![StackId::Tcp]);
                    drop(pre.initiate().await.expect("initiate"));
                }
                let mut pre = Preconnection::new(
                    Vec::new(),
                    vec![RemoteEndpoint::new()
                        .with_socket_addr(addr)
                        .expect("remote")],
                    TransportProperties::new(),
                    SecurityParameters::disabled(),
                );
                pre.set_protocols(vec![StackId::Tcp]);
                for _ in 0..n {
                    drop(pre.initiate().await.expect("initiate"));
                }
            }
            "context" => {
                // A port on [::1] that drops SYNs: its accept queue is full.
                let bh = socket2::Socket::new(socket2::Domain::IPV6, socket2::Type::STREAM, None)
                    .expect("socket");
                bh.set_only_v6(true).expect("v6only");
                bh.bind(&"[::1]:0".parse::<SocketAddr>().expect("addr").into())
                    .expect("bind");
                bh.listen(0).expect("listen");
                let bh_addr = bh.local_addr().expect("addr").as_socket().expect("inet");
                let mut filler = Vec::new();
                for _ in 0..2 {
                    if let Ok(c) =
                        std::net::TcpStream::connect_timeout(&bh_addr, Duration::from_millis(200))
                    {
                        filler.push(c);
                    }
                }
                // The working listener on 127.0.0.1, on the same port number.
                let v4 = TcpListener::bind(SocketAddr::new([127, 0, 0, 1].into(), bh_addr.port()))
                    .await
                    .expect("bind 127.0.0.1 on the blackhole's port");
                tokio::spawn(async move {
                    while let Ok((s, _)) = v4.accept().await {
                        drop(s);
                    }
                });
                let ctx = TransportContext::new();
                let mut pre = Preconnection::new(
                    vec![],
                    vec![RemoteEndpoint::new()
                        .with_host_name("server.test")
                        .expect("name")
                        .with_port(bh_addr.port())
                        .expect("port")],
                    TransportProperties::new(),
                    SecurityParameters::disabled(),
                );
                pre.add_framer(DelimiterFramer::line());
                let v6: IpAddr = "::1".parse().expect("v6");
                let v4: IpAddr = "127.0.0.1".parse().expect("v4");
                pre.set_resolver(
                    StaticResolver::new()
                        .answer(Family::V6, vec![v6], Duration::ZERO)
                        .answer(Family::V4, vec![v4], Duration::ZERO),
                );
                pre.set_transport_context(ctx);
                // The first connect learns; it is setup.
                pre.initiate().await.expect("first initiate").abort();
                for _ in 0..n {
                    pre.initiate().await.expect("initiate").abort();
                }
                drop((bh, filler));
            }
            other => panic!("unknown mode {other}: tcp, raw or context"),
        }
        acceptor.abort();
    }
}
