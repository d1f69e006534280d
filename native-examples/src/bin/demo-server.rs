//! demo-server: the www demo. Serves the page (`www/`) and the npm package
//! (`web/pkg/`) on 127.0.0.1, runs a native postsocket Listener that echoes
//! every Message, and puts a fault relay in front of it so the page can
//! delay, blackhole or refuse a stack and watch racing fall back.
//!
//! ```text
//! demo-server [--port 8080] [--www DIR] [--pkg DIR]
//! ```
//!
//! The echo port number P serves WebSocket on TCP and WebTransport on UDP.
//! WebTransport uses a fresh ECDSA P-256 certificate valid 10 days, rotated
//! every 7 (a new Listener; the relay moves to it); the page gets the
//! certificate's hash from `GET /api/config`. See `postsocket_examples::demo`.

use clap::Parser;
use postsocket::{
    Listener, LocalEndpoint, Preconnection, Preference, SecurityParameters, SelectionProperty,
    StackId, TransportProperties,
};
use postsocket_examples::demo::cert::{self, ShortLivedCert};
use postsocket_examples::demo::echo;
use postsocket_examples::demo::faults::{self, FrontState};
use postsocket_examples::demo::http::{handle, App, PageConfig};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;

/// The www demo server: the page, an echo Listener, faults on demand.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// HTTP port for the page on 127.0.0.1 (0 picks a free one).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// The page's directory.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../www"))]
    www: PathBuf,
    /// The npm package's directory (built by scripts/build-npm.sh).
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../web/pkg"))]
    pkg: PathBuf,
}

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// The stacks the echo Listener serves.
const STACKS: &[StackId] = &[StackId::Ws, StackId::Wt];
/// How long an old Listener keeps serving after a rotation.
const GRACE: Duration = Duration::from_secs(600);

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("demo-server: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), String> {
    if !args.www.join("index.html").is_file() {
        return Err(format!("no index.html in {}", args.www.display()));
    }
    if !args.pkg.is_dir() {
        eprintln!(
            "demo-server: warning: {} does not exist; build the npm package with scripts/build-npm.sh",
            args.pkg.display()
        );
    }
    let c = cert::short_lived()?;
    let listener = echo_listener(&c).await?;
    let front = FrontState::new(listener.local_addr());
    let echo_port = faults::start_front(LOOPBACK, 0, front.clone())
        .await
        .map_err(|e| format!("fault relay: {e}"))?;
    let app = Arc::new(App {
        www: args.www.clone(),
        pkg: args.pkg.clone(),
        front: front.clone(),
        config: Mutex::new(PageConfig {
            echo_port,
            ws_path: "/".into(),
            wt_path: "/".into(),
            wt_cert_sha256: c.sha256_hex.clone(),
            wt_cert_not_after: c.not_after_unix,
            stacks: STACKS.iter().map(|s| s.to_string()).collect(),
        }),
    });
    let listener = Arc::new(listener);
    tokio::spawn(serve_echo(listener.clone()));
    tokio::spawn(rotate(app.clone(), listener));

    let http = TcpListener::bind(SocketAddr::new(LOOPBACK, args.port))
        .await
        .map_err(|e| {
            format!(
                "cannot listen on 127.0.0.1:{}: {e} (choose another with --port, or --port 0)",
                args.port
            )
        })?;
    let addr = http.local_addr().map_err(|e| e.to_string())?;
    println!("postsocket demo: open http://{addr}/");
    println!(
        "echo Listener behind the fault relay on 127.0.0.1:{echo_port} ({})",
        STACKS
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!("WebTransport certificate sha-256 {}", c.sha256_hex);
    postsocket_examples::http_server::serve(http, move |req| handle(app.clone(), req)).await;
    Ok(())
}

/// A Listener on 127.0.0.1 (any port) for [`STACKS`], with this certificate.
async fn echo_listener(c: &ShortLivedCert) -> Result<Listener, String> {
    let local = LocalEndpoint::new()
        .with_socket_addr(SocketAddr::new(LOOPBACK, 0))
        .map_err(|e| e.to_string())?;
    // Opportunistic: plain ws and secure wt on one Listener.
    let mut sec = SecurityParameters::opportunistic();
    sec.server_certificate = vec![c.identity.clone()];
    // The page asks for Messages (preserveMsgBoundaries required), and so
    // does the Listener: a WebTransport stream then carries each Message
    // behind a length prefix, and a WebSocket message is one Message.
    let mut props = TransportProperties::new();
    props.set_preference(
        SelectionProperty::PreserveMsgBoundaries,
        Preference::Require,
    );
    let mut pre = Preconnection::new(vec![local], vec![], props, sec);
    pre.set_protocols(STACKS.to_vec());
    pre.listen()
        .await
        .map_err(|e| format!("echo Listener: {e}"))
}

async fn serve_echo(listener: Arc<Listener>) {
    while let Ok(c) = listener.accept().await {
        tokio::spawn(echo::echo(c));
    }
}

/// Every [`cert::ROTATE_AFTER`]: a new certificate and Listener; the relay
/// moves to it; the previous Listener keeps serving its connections for
/// [`GRACE`], then stops. A failed rotation is retried an hour later.
async fn rotate(app: Arc<App>, mut current: Arc<Listener>) {
    let mut wait = cert::ROTATE_AFTER;
    loop {
        tokio::time::sleep(wait).await;
        let made = match cert::short_lived() {
            Ok(c) => echo_listener(&c).await.map(|l| (c, l)),
            Err(e) => Err(e),
        };
        let (c, l) = match made {
            Ok(made) => made,
            Err(e) => {
                eprintln!("demo-server: certificate rotation failed, retrying in 1 h: {e}");
                wait = Duration::from_secs(3600);
                continue;
            }
        };
        wait = cert::ROTATE_AFTER;
        let l = Arc::new(l);
        tokio::spawn(serve_echo(l.clone()));
        app.front.set_upstream(l.local_addr());
        {
            let mut cfg = app.config.lock().expect("config lock");
            cfg.wt_cert_sha256 = c.sha256_hex.clone();
            cfg.wt_cert_not_after = c.not_after_unix;
        }
        println!(
            "rotated the WebTransport certificate: sha-256 {}",
            c.sha256_hex
        );
        let old = std::mem::replace(&mut current, l);
        tokio::spawn(async move {
            tokio::time::sleep(GRACE).await;
            old.stop();
        });
    }
}
