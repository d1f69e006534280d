//! One port number, every stack: a Listener whose properties allow several
//! stacks serves them all on the same port number (RFC 9622 §7.2, RFC 9623
//! §4.6: "accept every eligible protocol"). Each transport port has one socket,
//! and the first bytes of a peer tell which stack it speaks.
//!
//! # UDP port: QUIC, WebTransport or plain UDP
//!
//! One UDP socket, shared with quinn through its abstract socket interface
//! ([`quinn::AsyncUdpSocket`], implemented by `DemuxSocket`): quinn's endpoint
//! driver receives every datagram (with GRO, ECN and the rest of quinn-udp),
//! and before quinn sees a batch the demultiplexer takes the plain UDP
//! datagrams out of it and hands them to the UDP Listener flows
//! ([`super::udp::UdpPeers`]). Plain UDP flows answer from the same socket.
//! Classification, per datagram:
//! - a peer address already known as QUIC goes to quinn; one already known
//!   as plain UDP (a live UDP Connection) to its Connection;
//! - a new peer is QUIC if the datagram is a QUIC Initial: long header and
//!   fixed bit set (`first & 0xC0 == 0xC0`) and at least 1200 bytes (clients
//!   pad Initials to 1200, RFC 9000 §14.1);
//! - a new peer is also QUIC if it sends a packet whose destination
//!   connection ID this Listener issued (a short header, `first & 0xC0 ==
//!   0x40`, or a long one such as a Handshake packet): the
//!   Listener makes quinn's connection IDs carry a keyed hash, so a peer that
//!   migrated or was NAT-rebound to a new address keeps reaching quinn, and so
//!   do late packets of a connection that ended;
//! - anything else from a new peer is plain UDP.
//!
//! At most `ListenerLimits::quic_peers` QUIC peer addresses are remembered
//! (each until silent for [`QUIC_PEER_IDLE`]): a flood of Initials from
//! spoofed sources cannot grow the table. While it is full a new QUIC peer is
//! still recognised by its Initials and by the connection IDs issued here.
//!
//! QUIC and WebTransport (HTTP/3) share quinn's endpoint: the ALPN the
//! handshake agrees on (`h3`) tells a WebTransport session from a QUIC one.
//!
//! Limits: a plain UDP application whose first datagram is ≥ 1200 bytes and
//! starts with 0b11xxxxxx is taken for QUIC (quinn drops it, and that peer
//! stays QUIC until it has been silent for [`QUIC_PEER_IDLE`]); one whose first
//! datagram starts with 0b01xxxxxx and happens to carry a valid connection ID
//! at bytes 1..9 is too (a 2^-40 chance). The socket is quinn's, so plain UDP
//! flows inherit its options, notably the don't-fragment bit: a UDP Message
//! larger than the path MTU fails instead of being fragmented.

use super::{quic, udp};
use crate::backend::SocketOptions;
use quinn::udp::{RecvMeta, Transmit, UdpSocketState};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::future::Future;
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::Interest;

/// A QUIC peer address silent this long is forgotten (its connection has
/// timed out; a migrated or late packet still reaches quinn by its
/// connection ID).
pub(crate) const QUIC_PEER_IDLE: Duration = Duration::from_secs(300);

/// The smallest UDP datagram carrying a client's QUIC Initial (RFC 9000 §14.1).
const QUIC_INITIAL_MIN: usize = 1200;

/// The key of this Listener's QUIC connection IDs: 3 random nonce bytes, then
/// 5 bytes of SHA-256(key ‖ nonce), as quinn's own hashed generator does.
#[derive(Clone)]
struct CidKey(Arc<[u8; 32]>);

const CID_NONCE: usize = 3;
const CID_LEN: usize = 8;

fn random(buf: &mut [u8]) -> bool {
    rustls::crypto::ring::default_provider()
        .secure_random
        .fill(buf)
        .is_ok()
}

impl CidKey {
    fn new() -> io::Result<Self> {
        let mut key = [0u8; 32];
        if !random(&mut key) {
            return Err(io::Error::other("no random bytes for QUIC connection IDs"));
        }
        Ok(CidKey(Arc::new(key)))
    }

    fn tag(&self, nonce: &[u8]) -> [u8; CID_LEN - CID_NONCE] {
        let digest = Sha256::new()
            .chain_update(&self.0[..])
            .chain_update(nonce)
            .finalize();
        let mut t = [0u8; CID_LEN - CID_NONCE];
        t.copy_from_slice(&digest[..CID_LEN - CID_NONCE]);
        t
    }

    /// Whether `dcid` (at least `CID_LEN` bytes) starts with an ID this key made.
    fn issued(&self, dcid: &[u8]) -> bool {
        dcid.len() >= CID_LEN && self.tag(&dcid[..CID_NONCE]) == dcid[CID_NONCE..CID_LEN]
    }
}

/// quinn's connection ID generator for a demultiplexed endpoint.
struct CidGenerator {
    key: CidKey,
    counter: AtomicU32,
}

impl quinn::ConnectionIdGenerator for CidGenerator {
    fn generate_cid(&mut self) -> quinn::ConnectionId {
        let mut id = [0u8; CID_LEN];
        if !random(&mut id[..CID_NONCE]) {
            // No randomness: distinct nonces still (quinn retries duplicates).
            let c = self.counter.fetch_add(1, Ordering::Relaxed);
            id[..CID_NONCE].copy_from_slice(&c.to_le_bytes()[..CID_NONCE]);
        }
        let tag = self.key.tag(&id[..CID_NONCE]);
        id[CID_NONCE..].copy_from_slice(&tag);
        quinn::ConnectionId::new(&id)
    }

    fn cid_len(&self) -> usize {
        CID_LEN
    }

    fn cid_lifetime(&self) -> Option<Duration> {
        None
    }
}

/// Which stack a datagram belongs to.
struct Router {
    /// Peers known as QUIC, with when they were last heard (at most
    /// `quic_peers`).
    quic: HashMap<SocketAddr, Instant>,
    quic_peers: usize,
    last_sweep: Instant,
    key: CidKey,
    /// The plain UDP flows.
    udp: udp::UdpPeers,
}

impl Router {
    /// Whether the datagram `first` (the first of a batch from one peer) from
    /// `from` goes to quinn; see the module docs.
    fn is_quic(&mut self, from: SocketAddr, first: &[u8]) -> bool {
        let now = Instant::now();
        match self.quic.get_mut(&from) {
            Some(seen) if now.duration_since(*seen) < QUIC_PEER_IDLE => {
                *seen = now;
                return true;
            }
            // Silent for too long: its connection is gone; classify afresh.
            Some(_) => {
                self.quic.remove(&from);
            }
            None => {}
        }
        if self.udp.knows(&from) {
            return false;
        }
        let b = first.first().copied().unwrap_or(0);
        let long = b & 0xC0 == 0xC0;
        let initial = long && first.len() >= QUIC_INITIAL_MIN;
        let ours = if long {
            // Long header: version (4 bytes), then the DCID's length and the DCID.
            first.get(5).is_some_and(|&n| usize::from(n) == CID_LEN)
                && first.len() >= 6 + CID_LEN
                && self.key.issued(&first[6..])
        } else {
            b & 0xC0 == 0x40 && self.key.issued(&first[1..])
        };
        if !(initial || ours) {
            return false;
        }
        // Swept every 30 s, or every second while full.
        let since = now.duration_since(self.last_sweep);
        let full = self.quic.len() >= self.quic_peers;
        if since > QUIC_PEER_IDLE / 10 || (full && since > Duration::from_secs(1)) {
            self.quic
                .retain(|_, seen| now.duration_since(*seen) < QUIC_PEER_IDLE);
            self.last_sweep = now;
        }
        if self.quic.len() < self.quic_peers {
            self.quic.insert(from, now);
        }
        true
    }
}

/// The UDP port's socket as quinn sees it: sends are quinn's; received
/// batches lose their plain UDP datagrams to the UDP flows first.
struct DemuxSocket {
    io: Arc<tokio::net::UdpSocket>,
    state: UdpSocketState,
    router: Mutex<Router>,
}

impl std::fmt::Debug for DemuxSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DemuxSocket")
            .field("local", &self.io.local_addr().ok())
            .finish_non_exhaustive()
    }
}

type WritableFuture = Pin<Box<dyn Future<Output = io::Result<()>> + Send + Sync>>;

/// Waits for the socket to be writable, one waiter per quinn task (as quinn's
/// own tokio socket does).
struct Writable {
    io: Arc<tokio::net::UdpSocket>,
    fut: Option<WritableFuture>,
}

impl std::fmt::Debug for Writable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writable").finish_non_exhaustive()
    }
}

impl quinn::UdpPoller for Writable {
    fn poll_writable(mut self: Pin<&mut Self>, cx: &mut Context) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let fut = this.fut.get_or_insert_with(|| {
            let io = this.io.clone();
            Box::pin(async move { io.writable().await })
        });
        let r = fut.as_mut().poll(cx);
        if r.is_ready() {
            this.fut = None;
        }
        r
    }
}

impl quinn::AsyncUdpSocket for DemuxSocket {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn quinn::UdpPoller>> {
        Box::pin(Writable {
            io: self.io.clone(),
            fut: None,
        })
    }

    fn try_send(&self, transmit: &Transmit) -> io::Result<()> {
        self.io.try_io(Interest::WRITABLE, || {
            self.state.send((&*self.io).into(), transmit)
        })
    }

    fn poll_recv(
        &self,
        cx: &mut Context,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        loop {
            futures::ready!(self.io.poll_recv_ready(cx))?;
            // As quinn's tokio socket: errors (ICMP reports and the like) are skipped.
            let Ok(n) = self.io.try_io(Interest::READABLE, || {
                self.state.recv((&*self.io).into(), bufs, meta)
            }) else {
                continue;
            };
            // Keep quinn's datagrams at the front; give the rest to the UDP flows.
            let mut router = self.router.lock().unwrap_or_else(|e| e.into_inner());
            let mut kept = 0;
            for i in 0..n {
                let m = meta[i];
                let data = &bufs[i][..m.len];
                let stride = if m.stride == 0 { m.len } else { m.stride };
                if router.is_quic(m.addr, &data[..stride.min(m.len)]) {
                    bufs.swap(i, kept);
                    meta.swap(i, kept);
                    kept += 1;
                } else {
                    // One buffer may hold several datagrams of one peer
                    // (GRO); an empty one is a datagram too.
                    if data.is_empty() {
                        let _ = router.udp.deliver(m.addr, Vec::new());
                    }
                    for d in data.chunks(stride.max(1)) {
                        // A Listener that is gone takes no new flows; the
                        // existing ones keep being served.
                        let _ = router.udp.deliver(m.addr, d.to_vec());
                    }
                }
            }
            if kept > 0 {
                return Poll::Ready(Ok(kept));
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.io.local_addr()
    }

    fn may_fragment(&self) -> bool {
        self.state.may_fragment()
    }

    fn max_transmit_segments(&self) -> usize {
        self.state.max_gso_segments()
    }

    fn max_receive_segments(&self) -> usize {
        self.state.gro_segments()
    }
}

/// Listen on the UDP port `addr` for QUIC (with server configuration `tls`)
/// and plain UDP on one socket (see the module docs). Accepted Connections
/// (QUIC streams, UDP flows) go to `tx`.
pub(crate) fn listen_datagram_port(
    addr: SocketAddr,
    tls: Arc<rustls::ServerConfig>,
    opts: &SocketOptions,
    wt: Option<quic::WtServer>,
    tx: super::IncomingTx,
) -> io::Result<(SocketAddr, tokio::task::AbortHandle)> {
    let server = quic::server_config(tls, opts)?;
    let sock: std::net::UdpSocket = udp::bind(addr, opts)?.into();
    let state = UdpSocketState::new((&sock).into())?;
    let io = Arc::new(tokio::net::UdpSocket::from_std(sock)?);
    let key = CidKey::new()?;
    let udp = udp::UdpPeers::new(io.clone(), tx.clone());
    let keepalive = udp.keepalive();
    let socket = Arc::new(DemuxSocket {
        io,
        state,
        router: Mutex::new(Router {
            quic: HashMap::new(),
            quic_peers: tx.limits().quic_peers(),
            last_sweep: Instant::now(),
            key: key.clone(),
            udp,
        }),
    });
    let mut config = quinn::EndpointConfig::default();
    config.cid_generator(move || {
        Box::new(CidGenerator {
            key: key.clone(),
            counter: AtomicU32::new(0),
        })
    });
    let endpoint = quinn::Endpoint::new_with_abstract_socket(
        config,
        Some(server),
        socket,
        Arc::new(quinn::TokioRuntime),
    )?;
    // The UDP flows handed out keep the endpoint (which drives the shared
    // socket) alive after the Listener stopped, as QUIC connections do.
    let keep: udp::Keepalive = Arc::new(endpoint.clone());
    let _ = keepalive.set(Arc::downgrade(&keep));
    quic::serve_keeping(endpoint, quic::accepts_0rtt(opts), wt, tx, Some(keep))
}

#[cfg(test)]
mod tests {
    use super::*;
    use quinn::ConnectionIdGenerator;

    #[test]
    fn issued_connection_ids_are_recognised() {
        let key = CidKey::new().unwrap();
        let mut g = CidGenerator {
            key: key.clone(),
            counter: AtomicU32::new(0),
        };
        for _ in 0..100 {
            let cid = g.generate_cid();
            assert_eq!(cid.len(), CID_LEN);
            assert!(key.issued(&cid));
            let mut other = cid.to_vec();
            other[CID_LEN - 1] ^= 1;
            assert!(!key.issued(&other));
        }
        assert!(!CidKey::new().unwrap().issued(&g.generate_cid()));
        assert!(!key.issued(&[0u8; 4]));
    }

    fn router() -> Router {
        let (tx, _rx) = futures::channel::mpsc::unbounded();
        let std = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        std.set_nonblocking(true).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .unwrap();
        let _g = rt.enter();
        let io = Arc::new(tokio::net::UdpSocket::from_std(std).unwrap());
        Router {
            quic: HashMap::new(),
            quic_peers: 4,
            last_sweep: Instant::now(),
            key: CidKey::new().unwrap(),
            udp: udp::UdpPeers::new(io, crate::backend::IncomingTx::new(tx, Default::default())),
        }
    }

    #[test]
    fn classification_of_new_peers() {
        let mut r = router();
        let a: SocketAddr = "127.0.0.1:1000".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:1001".parse().unwrap();
        let c: SocketAddr = "127.0.0.1:1002".parse().unwrap();
        // A padded Initial: QUIC, and the peer stays QUIC for small packets.
        let mut initial = vec![0u8; 1200];
        initial[0] = 0xC3;
        assert!(r.is_quic(a, &initial));
        assert!(r.is_quic(a, &[0x41, 1, 2]));
        // Long header but short: plain UDP.
        assert!(!r.is_quic(b, &initial[..100]));
        // A short header with a connection ID the Listener issued: QUIC.
        let mut g = CidGenerator {
            key: r.key.clone(),
            counter: AtomicU32::new(0),
        };
        let mut short = vec![0x40];
        short.extend_from_slice(&g.generate_cid());
        short.extend_from_slice(&[0u8; 30]);
        assert!(r.is_quic(c, &short));
        // A short header with some other ID: plain UDP.
        short[3] ^= 0xff;
        assert!(!r.is_quic("127.0.0.1:1003".parse().unwrap(), &short));
    }

    #[test]
    fn a_long_header_with_an_issued_connection_id_is_quic() {
        let mut r = router();
        let mut g = CidGenerator {
            key: r.key.clone(),
            counter: AtomicU32::new(0),
        };
        // A client's Handshake packet: long header, version, DCID (ours).
        let mut handshake = vec![0xE0, 0, 0, 0, 1, CID_LEN as u8];
        handshake.extend_from_slice(&g.generate_cid());
        handshake.extend_from_slice(&[0u8; 40]);
        assert!(r.is_quic("127.0.0.1:2000".parse().unwrap(), &handshake));
        // The same with another DCID, or a DCID length that is not ours: plain UDP.
        handshake[8] ^= 0xff;
        assert!(!r.is_quic("127.0.0.1:2001".parse().unwrap(), &handshake));
        handshake[5] = 4;
        assert!(!r.is_quic("127.0.0.1:2002".parse().unwrap(), &handshake));
    }

    #[test]
    fn quic_peers_remembered_are_bounded() {
        let mut r = router();
        let mut initial = vec![0u8; 1200];
        initial[0] = 0xC3;
        // Ten spoofed sources send an Initial each: all go to quinn, 4 are remembered.
        for port in 3000..3010 {
            assert!(r.is_quic(SocketAddr::from(([127, 0, 0, 1], port)), &initial));
        }
        assert_eq!(r.quic.len(), 4, "the table holds quic_peers (4) addresses");
        // A remembered one stays QUIC for a small packet; a forgotten one does not.
        assert!(r.is_quic(SocketAddr::from(([127, 0, 0, 1], 3000)), &[0x41, 1, 2]));
        assert!(!r.is_quic(SocketAddr::from(([127, 0, 0, 1], 3009)), &[0x41, 1, 2]));
    }
}
