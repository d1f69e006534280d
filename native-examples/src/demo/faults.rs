//! Faults on demand: a front port that passes traffic to the echo Listener,
//! or delays, blackholes or refuses it.
//!
//! The demo page connects to one port number P. TCP on P carries WebSocket,
//! UDP on P carries WebTransport (QUIC). Both are relayed to the real
//! postsocket Listener, so the Listener itself stays untouched, and the page
//! can ask for a fault per stack:
//!
//! | fault     | TCP (WebSocket)                              | UDP (WebTransport)                                   |
//! |-----------|----------------------------------------------|------------------------------------------------------|
//! | none      | relay                                        | relay                                                |
//! | delay N   | accept, relay after N ms                     | hold a new flow's packets until N ms after its first |
//! | blackhole | accept, never answer (the handshake hangs)   | drop every packet (QUIC Initials get no answer)      |
//! | refuse    | reset at once (RST)                          | a QUIC endpoint that refuses (CONNECTION_REFUSED)    |
//!
//! A fault applies to connections and flows that start after it was set.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc;

/// What the front port does with one stack's new connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "lowercase")]
pub enum Fault {
    /// Relay to the Listener.
    #[default]
    None,
    /// Relay, but only after this many milliseconds.
    Delay {
        /// The delay.
        ms: u64,
    },
    /// Never answer.
    Blackhole,
    /// Refuse at once.
    Refuse,
}

impl Fault {
    /// The longest delay the page may ask for.
    pub const MAX_DELAY_MS: u64 = 10_000;

    /// Check a fault the page asked for.
    pub fn validate(&self) -> Result<(), String> {
        match self {
            Fault::Delay { ms } if *ms > Self::MAX_DELAY_MS => Err(format!(
                "a delay of {ms} ms is over the {} ms limit",
                Self::MAX_DELAY_MS
            )),
            _ => Ok(()),
        }
    }
}

/// The faults in force, per side of the front port.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Faults {
    /// TCP: the WebSocket stacks.
    pub tcp: Fault,
    /// UDP: WebTransport.
    pub udp: Fault,
}

/// Shared fault settings and where the Listener currently is (it moves when
/// the WebTransport certificate is rotated).
#[derive(Debug)]
pub struct FrontState {
    faults: Mutex<Faults>,
    upstream: Mutex<SocketAddr>,
    /// Bytes of UDP packets waiting in every flow's queue (at most
    /// `QUEUED_MAX`).
    udp_queued: Arc<AtomicUsize>,
}

impl FrontState {
    /// Relay to `upstream` with no faults.
    pub fn new(upstream: SocketAddr) -> Arc<FrontState> {
        Arc::new(FrontState {
            faults: Mutex::new(Faults::default()),
            upstream: Mutex::new(upstream),
            udp_queued: Arc::default(),
        })
    }
    /// The faults in force.
    pub fn faults(&self) -> Faults {
        *self.faults.lock().expect("faults lock")
    }
    /// Replace the faults.
    pub fn set_faults(&self, f: Faults) {
        *self.faults.lock().expect("faults lock") = f;
    }
    /// Where new connections are relayed to.
    pub fn upstream(&self) -> SocketAddr {
        *self.upstream.lock().expect("upstream lock")
    }
    /// Relay new connections to another Listener.
    pub fn set_upstream(&self, a: SocketAddr) {
        *self.upstream.lock().expect("upstream lock") = a;
    }
}

/// How long a blackholed TCP connection is held before it is dropped.
const HOLD: Duration = Duration::from_secs(60);
/// A UDP flow with no packet for this long is forgotten.
const FLOW_IDLE: Duration = Duration::from_secs(60);
/// At most this many UDP flows at once; beyond it new flows are dropped.
/// (Each holds a socket: well under the usual limit of 1,024 descriptors,
/// which the demo's HTTP server and echo Listener share.)
const MAX_FLOWS: usize = 256;
/// At most this many bytes of UDP packets wait in all flows' queues (a
/// delay fault holds them); beyond it packets are dropped, as a congested
/// path drops them.
const QUEUED_MAX: usize = 16 << 20;

/// Bind TCP and UDP on the same port number of `ip` (port 0: any free one)
/// and relay both. Returns the port number.
pub async fn start_front(
    ip: std::net::IpAddr,
    port: u16,
    state: Arc<FrontState>,
) -> io::Result<u16> {
    let mut last = None;
    for _ in 0..20 {
        let tcp = TcpListener::bind(SocketAddr::new(ip, port)).await?;
        let addr = tcp.local_addr()?;
        match UdpSocket::bind(addr).await {
            Ok(udp) => {
                let refuser = Refuser::start(ip).await?;
                tokio::spawn(tcp_front(tcp, state.clone()));
                tokio::spawn(udp_front(Arc::new(udp), state, refuser));
                return Ok(addr.port());
            }
            Err(e) if port == 0 => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::other("no port free for both TCP and UDP")))
}

async fn tcp_front(listener: TcpListener, state: Arc<FrontState>) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            // Out of descriptors (EMFILE) fails again at once: pause, or the
            // loop would spin.
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let fault = state.faults().tcp;
        let upstream = state.upstream();
        tokio::spawn(async move {
            match fault {
                Fault::None => relay_tcp(client, upstream).await,
                Fault::Delay { ms } => {
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    relay_tcp(client, upstream).await
                }
                Fault::Blackhole => {
                    // Read and discard until the client gives up (bounded).
                    let _ = tokio::time::timeout(HOLD, drain(client)).await;
                }
                Fault::Refuse => {
                    // SO_LINGER 0: closing sends RST, like a port with no listener.
                    let _ = client.set_zero_linger();
                    drop(client);
                }
            }
        });
    }
}

async fn drain(mut s: TcpStream) {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 4096];
    while let Ok(n) = s.read(&mut buf).await {
        if n == 0 {
            break;
        }
    }
}

async fn relay_tcp(mut client: TcpStream, upstream: SocketAddr) {
    let _ = client.set_nodelay(true);
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        let _ = client.set_zero_linger();
        return;
    };
    let _ = server.set_nodelay(true);
    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
}

/// One client's UDP flow: packets go through `tx` to its relay task.
struct Flow {
    tx: mpsc::Sender<Vec<u8>>,
    last: Instant,
}

async fn udp_front(front: Arc<UdpSocket>, state: Arc<FrontState>, refuser: SocketAddr) {
    let mut flows: HashMap<SocketAddr, Flow> = HashMap::new();
    // Bytes waiting in every flow's queue (see QUEUED_MAX).
    let queued = state.udp_queued.clone();
    let mut buf = vec![0u8; 65536];
    loop {
        let Ok((n, client)) = front.recv_from(&mut buf).await else {
            continue;
        };
        let now = Instant::now();
        if !flows.contains_key(&client) {
            // Forget idle flows only when a new one arrives (not per packet).
            flows.retain(|_, f| now.duration_since(f.last) < FLOW_IDLE && !f.tx.is_closed());
            if flows.len() >= MAX_FLOWS {
                continue;
            }
            let fault = state.faults().udp;
            let to = match fault {
                Fault::Refuse => refuser,
                _ => state.upstream(),
            };
            let (tx, rx) = mpsc::channel(256);
            let rx = Queue {
                rx,
                queued: queued.clone(),
            };
            tokio::spawn(udp_flow(front.clone(), client, to, fault, rx));
            flows.insert(client, Flow { tx, last: now });
        }
        let flow = flows.get_mut(&client).expect("flow inserted");
        flow.last = now;
        // A full queue drops the packet, as a congested path would; QUIC retransmits.
        if queued.load(Ordering::Relaxed) + n > QUEUED_MAX {
            continue;
        }
        queued.fetch_add(n, Ordering::Relaxed);
        if flow.tx.try_send(buf[..n].to_vec()).is_err() {
            queued.fetch_sub(n, Ordering::Relaxed);
        }
    }
}

/// A flow's queue, with the count of bytes waiting in all of them.
struct Queue {
    rx: mpsc::Receiver<Vec<u8>>,
    queued: Arc<AtomicUsize>,
}

impl Queue {
    async fn recv(&mut self) -> Option<Vec<u8>> {
        let p = self.rx.recv().await?;
        self.queued.fetch_sub(p.len(), Ordering::Relaxed);
        Some(p)
    }
}

impl Drop for Queue {
    fn drop(&mut self) {
        self.rx.close();
        while let Ok(p) = self.rx.try_recv() {
            self.queued.fetch_sub(p.len(), Ordering::Relaxed);
        }
    }
}

/// Relay one flow: client → `to` (after the fault), and `to` → client.
async fn udp_flow(
    front: Arc<UdpSocket>,
    client: SocketAddr,
    to: SocketAddr,
    fault: Fault,
    mut rx: Queue,
) {
    if fault == Fault::Blackhole {
        // Swallow until the flow goes idle.
        while let Ok(Some(_)) = tokio::time::timeout(FLOW_IDLE, rx.recv()).await {}
        return;
    }
    let bind = SocketAddr::new(to.ip(), 0);
    let Ok(up) = UdpSocket::bind(bind).await else {
        return;
    };
    if up.connect(to).await.is_err() {
        return;
    }
    let up = Arc::new(up);
    let back = {
        let up = up.clone();
        let front = front.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 65536];
            while let Ok(Ok(n)) = tokio::time::timeout(FLOW_IDLE, up.recv(&mut buf)).await {
                let _ = front.send_to(&buf[..n], client).await;
            }
        })
    };
    let release = match fault {
        Fault::Delay { ms } => Some(tokio::time::Instant::now() + Duration::from_millis(ms)),
        _ => None,
    };
    while let Ok(Some(p)) = tokio::time::timeout(FLOW_IDLE, rx.recv()).await {
        if let Some(t) = release {
            tokio::time::sleep_until(t).await;
        }
        let _ = up.send(&p).await;
    }
    back.abort();
}

/// A QUIC endpoint that refuses every connection: the UDP "refused".
struct Refuser;

impl Refuser {
    async fn start(ip: std::net::IpAddr) -> io::Result<SocketAddr> {
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()])
            .map_err(|e| io::Error::other(format!("refuser certificate: {e}")))?;
        let cert = rustls_pki_types::CertificateDer::from(ck.cert.der().to_vec());
        let key = rustls_pki_types::PrivateKeyDer::try_from(ck.signing_key.serialize_der())
            .map_err(|e| io::Error::other(format!("refuser key: {e}")))?;
        let config = quinn::ServerConfig::with_single_cert(vec![cert], key)
            .map_err(|e| io::Error::other(format!("refuser config: {e}")))?;
        let endpoint = quinn::Endpoint::server(config, SocketAddr::new(ip, 0))?;
        let addr = endpoint.local_addr()?;
        tokio::spawn(async move {
            while let Some(incoming) = endpoint.accept().await {
                incoming.refuse();
            }
        });
        Ok(addr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Under a delay fault, UDP packets wait in their flows' queues: from
    /// 20 sources sending 60 KB datagrams, at most QUEUED_MAX bytes wait in
    /// all (each flow's queue alone could hold 15 MB), and at most
    /// MAX_FLOWS flows exist.
    #[tokio::test]
    async fn a_delay_fault_holds_a_bounded_number_of_udp_bytes() {
        let sink = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let state = FrontState::new(sink.local_addr().unwrap());
        state.set_faults(Faults {
            tcp: Fault::None,
            udp: Fault::Delay { ms: 10_000 },
        });
        let port = start_front("127.0.0.1".parse().unwrap(), 0, state.clone())
            .await
            .unwrap();
        let front = SocketAddr::from(([127, 0, 0, 1], port));
        let big = vec![7u8; 60_000];
        let mut most = 0;
        for _ in 0..20 {
            let peer = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            for _ in 0..40 {
                peer.send_to(&big, front).unwrap();
                tokio::time::sleep(Duration::from_micros(200)).await;
                most = most.max(state.udp_queued.load(Ordering::Relaxed));
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        most = most.max(state.udp_queued.load(Ordering::Relaxed));
        assert!(most <= QUEUED_MAX, "{most} bytes queued");
        assert!(
            most >= QUEUED_MAX / 2,
            "{most} bytes queued: the delay holds them"
        );
    }
}
