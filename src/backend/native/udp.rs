//! UDP (RFC 9623 §9.2): one Connection per remote. A client Connection owns a
//! connected socket; a Listener shares one socket and demultiplexes datagrams
//! by 4-tuple into Connections, the first datagram from a new peer yielding
//! ConnectionReceived.

use crate::backend::{Incoming, Recv, SocketOptions};
use crate::capability::Capabilities;
use futures::channel::mpsc;
use futures::StreamExt;
use socket2::{Domain, Protocol, Socket, Type};
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Largest UDP payload.
const MAX_DATAGRAM: usize = 65_535;

thread_local! {
    /// Where a connected UDP socket's datagram is read before it is copied
    /// out at its own size: one per thread, made at its first read.
    static SCRATCH: std::cell::RefCell<Option<Vec<u8>>> = const { std::cell::RefCell::new(None) };
}

type PeerRx = Arc<futures::lock::Mutex<FlowRx>>;

/// What a queued datagram costs beyond its payload: its allocation and its
/// node in the flow's queue, about 64 bytes. Counted against
/// `udp_buffer_bytes` with the payload, so that many small (or empty)
/// datagrams are bounded as large ones are.
const DATAGRAM_OVERHEAD: usize = 64;

/// What a queued datagram of `len` bytes counts against `udp_buffer_bytes`.
fn cost(len: usize) -> usize {
    len + DATAGRAM_OVERHEAD
}

/// While the flow table is full, how often a datagram from a new source
/// may make the Listener sweep it for flows that ended (a sweep walks every
/// flow; a flood from new sources, which needs no handshake, must not make
/// each of its datagrams cost that).
const FULL_SWEEP_EVERY: Duration = Duration::from_millis(10);

/// A flow's queue, read by its Connection; what it still holds when dropped
/// goes back to the Listener's buffer.
pub(crate) struct FlowRx {
    rx: mpsc::Receiver<Vec<u8>>,
    queued: Arc<AtomicUsize>,
}

impl FlowRx {
    async fn next(&mut self) -> Option<Vec<u8>> {
        let d = self.rx.next().await?;
        self.queued.fetch_sub(cost(d.len()), Ordering::Relaxed);
        Some(d)
    }
}

impl Drop for FlowRx {
    fn drop(&mut self) {
        self.rx.close();
        while let Ok(d) = self.rx.try_recv() {
            self.queued.fetch_sub(cost(d.len()), Ordering::Relaxed);
        }
    }
}

impl std::fmt::Debug for FlowRx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FlowRx")
    }
}

/// How many datagrams a Listener's flow carried, either way, and whether
/// the Listener forgot it for being idle (`ListenerLimits::udp_flow_idle_timeout`).
/// A datagram only counts (no clock read per datagram); the Listener's
/// sweeps see whether the count moved.
#[derive(Debug)]
pub(crate) struct FlowActivity {
    datagrams: AtomicU64,
    expired: AtomicBool,
    timeout: Duration,
}

impl FlowActivity {
    fn new(timeout: Duration) -> Self {
        FlowActivity {
            datagrams: AtomicU64::new(0),
            expired: AtomicBool::new(false),
            timeout,
        }
    }

    /// A datagram went by.
    fn touch(&self) {
        self.datagrams.fetch_add(1, Ordering::Relaxed);
    }
}

/// A Listener's flow, as its table holds it.
struct Flow {
    tx: mpsc::Sender<Vec<u8>>,
    activity: Arc<FlowActivity>,
    /// The datagram count the last sweep saw, and since when it has not moved.
    seen: u64,
    quiet_since: Instant,
}

impl Flow {
    /// At a sweep: whether the flow has been quiet for its idle timeout.
    /// A count that moved since the last sweep starts the quiet time over,
    /// so a flow expires between one and about two sweep intervals after
    /// the timeout since its last datagram.
    fn idle_at(&mut self, now: Instant) -> bool {
        let count = self.activity.datagrams.load(Ordering::Relaxed);
        if count != self.seen {
            self.seen = count;
            self.quiet_since = now;
            return false;
        }
        now.saturating_duration_since(self.quiet_since) >= self.activity.timeout
    }
}

/// A UDP flow.
#[derive(Clone, Debug)]
pub(crate) struct UdpTransport {
    socket: Arc<tokio::net::UdpSocket>,
    peer: SocketAddr,
    /// For a Listener's peer: the datagrams the Listener demultiplexed to it.
    demux: Option<PeerRx>,
    /// For a Listener's peer: its last datagram either way.
    activity: Option<Arc<FlowActivity>>,
    /// What keeps the demultiplexing alive while this flow lives (on a port
    /// shared with QUIC: the quinn endpoint that drives the socket).
    _keep: Option<Keepalive>,
}

/// Something a flow keeps alive (see `UdpTransport::_keep`).
pub(crate) type Keepalive = Arc<dyn std::any::Any + Send + Sync>;

impl UdpTransport {
    /// "Connect": bind and set the default peer. No packet is sent; the path is ready.
    pub(crate) fn connect(remote: SocketAddr, opts: &SocketOptions) -> io::Result<Self> {
        let local = match opts.local {
            Some(l) if l.is_ipv6() != remote.is_ipv6() => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("local address {l} and remote {remote} are of different families"),
                ))
            }
            Some(l) => l,
            None if remote.is_ipv6() => "[::]:0".parse().expect("addr"),
            None => "0.0.0.0:0".parse().expect("addr"),
        };
        let sock = bind(local, opts)?;
        sock.connect(&remote.into())?;
        let socket = tokio::net::UdpSocket::from_std(sock.into())?;
        Ok(UdpTransport {
            _keep: None,
            socket: Arc::new(socket),
            peer: remote,
            demux: None,
            activity: None,
        })
    }

    pub(crate) fn socket(&self) -> &tokio::net::UdpSocket {
        &self.socket
    }

    pub(crate) fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// Read one datagram. On a connected socket (a client's), an ICMP
    /// report for an earlier datagram comes back as an error here (see
    /// [`is_icmp_report`]); the socket is fine and the next read goes on.
    pub(crate) async fn read(&self) -> io::Result<Recv> {
        match &self.demux {
            Some(rx) => match rx.lock().await.next().await {
                Some(d) => Ok(Recv::Datagram(d.into())),
                None => match &self.activity {
                    Some(a) if a.expired.load(Ordering::Relaxed) => Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!(
                            "the UDP flow with {} carried no datagram either way for {} (ListenerLimits udp_flow_idle_timeout): the Listener forgot it, and a new datagram from it starts a new Connection",
                            self.peer,
                            crate::runtime::ms_text(a.timeout)
                        ),
                    )),
                    _ => Err(io::Error::new(
                        io::ErrorKind::ConnectionAborted,
                        "the Listener that demultiplexed this flow stopped",
                    )),
                },
            },
            // Read into the thread's scratch buffer, and keep a copy of the
            // datagram's own size: a buffer of MAX_DATAGRAM per datagram
            // was zeroed each time and stayed with the Message it became
            // (64 KiB held for each small datagram the application kept).
            None => loop {
                self.socket.readable().await?;
                let read = SCRATCH.with(|scratch| {
                    let mut scratch = scratch.borrow_mut();
                    let buf = scratch.get_or_insert_with(|| vec![0u8; MAX_DATAGRAM]);
                    self.socket
                        .try_recv(buf)
                        .map(|n| bytes::Bytes::copy_from_slice(&buf[..n]))
                });
                match read {
                    Ok(d) => return Ok(Recv::Datagram(d)),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    Err(e) => return Err(e),
                }
            },
        }
    }

    /// Send now if the socket has room; `None` if it would block.
    pub(crate) fn try_send(&self, data: &[u8]) -> Option<io::Result<()>> {
        let sent = match &self.demux {
            Some(_) => self.socket.try_send_to(data, self.peer),
            None => self.socket.try_send(data),
        };
        match sent {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => None,
            Err(e) => Some(Err(e)),
            Ok(n) => {
                self.touch();
                Some(Self::whole(n, data.len()))
            }
        }
    }

    /// A datagram went out: the flow is not idle.
    fn touch(&self) {
        if let Some(a) = &self.activity {
            a.touch();
        }
    }

    fn whole(n: usize, len: usize) -> io::Result<()> {
        if n != len {
            return Err(io::Error::other(format!(
                "sent {n} of {len} bytes as one datagram"
            )));
        }
        Ok(())
    }

    pub(crate) async fn send(&self, data: &[u8]) -> io::Result<()> {
        let n = match &self.demux {
            Some(_) => self.socket.send_to(data, self.peer).await?,
            None => self.socket.send(data).await?,
        };
        self.touch();
        Self::whole(n, data.len())
    }

    pub(crate) fn abort(&self) {}

    /// Largest payload in one unfragmented datagram on this path: the
    /// interface MTU is not known here, so the Ethernet MTU (1500) minus
    /// IP and UDP headers.
    pub(crate) fn path_max_payload(&self) -> u64 {
        if self.peer.is_ipv6() {
            1500 - 40 - 8
        } else {
            1500 - 20 - 8
        }
    }
}

/// A non-blocking UDP socket bound to `local` (a Listener's, or a client's).
pub(crate) fn bind(local: SocketAddr, opts: &SocketOptions) -> io::Result<Socket> {
    let sock = super::sockopt::new_socket(Domain::for_address(local), Type::DGRAM, Protocol::UDP)?;
    if local.is_ipv6() {
        sock.set_only_v6(true)?;
    }
    if let Some(ifname) = &opts.interface {
        super::sockopt::bind_device(&sock, ifname)?;
    }
    if opts.dscp != 0 {
        super::sockopt::set_dscp(&socket2::SockRef::from(&sock), local.is_ipv6(), opts.dscp)?;
    }
    sock.bind(&local.into())?;
    Ok(sock)
}

/// Listen for UDP on `addr`: each new peer becomes an Incoming Connection.
pub(crate) fn listen(
    addr: SocketAddr,
    opts: &SocketOptions,
    tx: super::IncomingTx,
) -> io::Result<(SocketAddr, tokio::task::AbortHandle)> {
    let sock = bind(addr, opts)?;
    let socket = Arc::new(tokio::net::UdpSocket::from_std(sock.into())?);
    let local = socket.local_addr()?;
    let task = tokio::spawn(async move {
        let mut peers = UdpPeers::new(socket.clone(), tx.clone());
        let mut buf = vec![0u8; MAX_DATAGRAM];
        loop {
            // Once the Listener stopped (or is gone), the flows it handed
            // out go on; the socket closes when the last of them ended.
            let stopped = tx.is_closed();
            if stopped && !peers.any_live() {
                return;
            }
            let recv = socket.recv_from(&mut buf);
            let tick = tokio::time::sleep(peers.sweep_interval());
            let (n, from) = tokio::select! {
                r = recv => match r {
                    Ok(x) => x,
                    Err(e) => {
                        if !stopped {
                            let _ = tx.unbounded_send(Err(e));
                        }
                        // An error (ICMP unreachable, EMFILE...) must not spin.
                        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                        continue;
                    }
                },
                _ = tick => {
                    peers.expire_idle();
                    continue;
                }
            };
            if stopped {
                peers.deliver_known(from, buf[..n].to_vec());
            } else {
                peers.deliver(from, buf[..n].to_vec());
            }
        }
    });
    Ok((local, task.abort_handle()))
}

/// A UDP Listener's flows: demultiplexes datagrams by peer address into
/// Connections, the first datagram of a new peer yielding an Incoming. Used
/// by [`listen`] and by the UDP/QUIC demultiplexer (`datagram_port.rs`), which shares
/// one socket with quinn.
///
/// Bounded by the Listener's limits (`ListenerLimits`): at most `udp_flows`
/// flows (a flow ends when its Connection, or the unaccepted
/// ConnectionReceived holding it, is dropped; while full, datagrams from new
/// sources are refused, so spoofed or real sources cannot grow the
/// Listener), `udp_flow_datagrams` datagrams waiting per flow, and
/// `udp_buffer_bytes` waiting in all flows together, as one socket's receive
/// buffer. Past a bound datagrams are dropped, and the drops reported (a
/// Listener EstablishmentError that counts them). A flow idle for
/// `udp_flow_idle_timeout` is forgotten (its Connection's receive fails,
/// naming the bound), checked when datagrams arrive and by [`listen`]'s
/// tick (the demultiplexer shared with QUIC checks on arrival only).
pub(crate) struct UdpPeers {
    socket: Arc<tokio::net::UdpSocket>,
    tx: super::IncomingTx,
    peers: HashMap<SocketAddr, Flow>,
    /// When idle flows were last looked for.
    swept: Instant,
    /// Bytes queued in every flow together (at most `udp_buffer_bytes`).
    queued: Arc<AtomicUsize>,
    /// What each new flow keeps alive (set once that exists; weak here, so
    /// that it does not keep itself alive through these flows' table).
    keepalive: Arc<std::sync::OnceLock<std::sync::Weak<dyn std::any::Any + Send + Sync>>>,
    /// Datagrams dropped since the last report, and why.
    dropped: u64,
    refused: u64,
    /// How many times the table was swept (tests count them).
    #[cfg(test)]
    sweeps: usize,
}

impl UdpPeers {
    /// Flows answering from `socket`; new peers go to `tx`.
    pub(crate) fn new(socket: Arc<tokio::net::UdpSocket>, tx: super::IncomingTx) -> Self {
        UdpPeers {
            socket,
            tx,
            peers: HashMap::new(),
            swept: Instant::now(),
            queued: Arc::default(),
            keepalive: Arc::default(),
            dropped: 0,
            refused: 0,
            #[cfg(test)]
            sweeps: 0,
        }
    }

    fn local(&self) -> String {
        self.socket
            .local_addr()
            .map_or_else(|_| "?".into(), |a| a.to_string())
    }

    /// A datagram dropped (the buffer full) or, with `refused`, one from a
    /// new source refused (the flows full). The first of a run is reported
    /// at once; the count when datagrams are taken again.
    fn drop_one(&mut self, refused: bool) {
        if self.dropped == 0 && self.refused == 0 {
            let limits = self.tx.limits();
            let why = if refused {
                format!(
                    "datagrams from new sources are refused: {} flows, or {} connections the application has not taken yet, exist already (ListenerLimits udp_flows, pending_incoming)",
                    limits.udp_flows(),
                    limits.pending_incoming()
                )
            } else {
                format!(
                    "{} bytes, or {} datagrams of one flow, wait for the flows' readers already: datagrams are dropped (ListenerLimits udp_buffer_bytes, udp_flow_datagrams)",
                    limits.udp_buffer_bytes(),
                    limits.udp_flow_datagrams()
                )
            };
            let _ = self.tx.unbounded_send(Err(io::Error::other(format!(
                "UDP Listener on {}: {why}",
                self.local()
            ))));
        }
        if refused {
            self.refused += 1;
        } else {
            self.dropped += 1;
        }
    }

    /// Datagrams are taken again: report how many were dropped meanwhile.
    fn report_drops(&mut self) {
        if self.dropped == 0 && self.refused == 0 {
            return;
        }
        let why = format!(
            "UDP Listener on {}: {} datagrams were dropped (the flows' buffer was full) and {} from new sources refused (the flows were full)",
            self.local(),
            self.dropped,
            self.refused
        );
        let _ = self.tx.unbounded_send(Err(io::Error::other(why)));
        self.dropped = 0;
        self.refused = 0;
    }

    /// Where to set what each new flow keeps alive (see `UdpTransport::_keep`).
    #[cfg_attr(not(feature = "quic"), allow(dead_code))] // the QUIC+UDP port's
    pub(crate) fn keepalive(
        &self,
    ) -> Arc<std::sync::OnceLock<std::sync::Weak<dyn std::any::Any + Send + Sync>>> {
        self.keepalive.clone()
    }

    /// Whether any flow's Connection (or unaccepted ConnectionReceived) is alive.
    pub(crate) fn any_live(&mut self) -> bool {
        self.peers.retain(|_, f| !f.tx.is_closed());
        !self.peers.is_empty()
    }

    /// How often idle flows are looked for: within a second, and at least
    /// twice per idle timeout.
    pub(crate) fn sweep_interval(&self) -> Duration {
        (self.tx.limits().udp_flow_idle_timeout() / 2).min(Duration::from_secs(1))
    }

    /// Forget the flows whose Connection is gone, and those idle for
    /// `udp_flow_idle_timeout` (their readers see the flow end once they
    /// took what was queued).
    pub(crate) fn expire_idle(&mut self) {
        let now = Instant::now();
        self.swept = now;
        #[cfg(test)]
        {
            self.sweeps += 1;
        }
        self.peers.retain(|_, f| {
            if f.tx.is_closed() {
                return false;
            }
            if f.idle_at(now) {
                f.activity.expired.store(true, Ordering::Relaxed);
                return false;
            }
            true
        });
    }

    /// After the Listener stopped: a datagram for a flow it handed out
    /// still goes to it; one from anyone else is dropped.
    pub(crate) fn deliver_known(&mut self, from: SocketAddr, datagram: Vec<u8>) {
        if self.knows(&from) {
            self.deliver(from, datagram);
        }
    }

    /// Whether `peer` has a live Connection (its datagrams go to it).
    pub(crate) fn knows(&self, peer: &SocketAddr) -> bool {
        self.peers.get(peer).is_some_and(|f| !f.tx.is_closed())
    }

    /// Hand one datagram from `from` to its Connection, or start a new one.
    /// `false` once the Listener is gone (no new Connection can be delivered).
    pub(crate) fn deliver(&mut self, from: SocketAddr, datagram: Vec<u8>) -> bool {
        if self.swept.elapsed() >= self.sweep_interval() {
            self.expire_idle();
        }
        let len = cost(datagram.len());
        if self.queued.load(Ordering::Relaxed) + len > self.tx.limits().udp_buffer_bytes() {
            // The buffer is full: dropped like a full socket buffer.
            self.drop_one(false);
            return true;
        }
        let datagram = match self.peers.get_mut(&from) {
            None => datagram,
            Some(flow) => {
                // Counted before the reader can take (and uncount) it.
                self.queued.fetch_add(len, Ordering::Relaxed);
                match flow.tx.try_send(datagram) {
                    Ok(()) => {
                        flow.activity.touch();
                        self.report_drops();
                        return true;
                    }
                    // Queue full: dropped like a full socket buffer.
                    Err(e) if e.is_full() => {
                        self.queued.fetch_sub(len, Ordering::Relaxed);
                        self.drop_one(false);
                        return true;
                    }
                    // That Connection is gone: a new datagram starts a new one.
                    Err(e) => {
                        self.queued.fetch_sub(len, Ordering::Relaxed);
                        self.peers.remove(&from);
                        e.into_inner()
                    }
                }
            }
        };
        let flows = self.tx.limits().udp_flows();
        if self.peers.len() >= flows {
            // Forget the flows whose Connection is gone or that went idle,
            // then check again (at most once per FULL_SWEEP_EVERY).
            if self.swept.elapsed() >= FULL_SWEEP_EVERY {
                self.expire_idle();
            }
            if self.peers.len() >= flows {
                self.drop_one(true);
                return true;
            }
        }
        // Room among the Listener's pending connections, or refused (as
        // every new source is while the Listener's limit is 0).
        let Some(room) = self.tx.try_room().filter(|_| !self.tx.refusing()) else {
            self.drop_one(true);
            return true;
        };
        // futures' channel holds its bound plus one per sender.
        let (mut ptx, prx) = mpsc::channel(self.tx.limits().udp_flow_datagrams() - 1);
        let _ = ptx.try_send(datagram);
        self.queued.fetch_add(len, Ordering::Relaxed);
        let activity = Arc::new(FlowActivity::new(self.tx.limits().udp_flow_idle_timeout()));
        self.peers.insert(
            from,
            Flow {
                tx: ptx,
                activity: activity.clone(),
                seen: 0,
                quiet_since: Instant::now(),
            },
        );
        self.report_drops();
        let transport = UdpTransport {
            _keep: self.keepalive.get().and_then(std::sync::Weak::upgrade),
            socket: self.socket.clone(),
            peer: from,
            demux: Some(Arc::new(futures::lock::Mutex::new(FlowRx {
                rx: prx,
                queued: self.queued.clone(),
            }))),
            activity: Some(activity),
        };
        self.tx
            .unbounded_send(Ok(Incoming {
                transport: super::Transport::Udp(Arc::new(transport)),
                caps: &Capabilities::UDP,
                remote: from,
                group: None,
                room,
            }))
            .is_ok()
    }
}

/// True when `e`, from a connected UDP socket, reports an ICMP message
/// about an earlier datagram rather than a broken socket: port unreachable
/// (`ConnectionRefused`; Windows reports it as `ConnectionReset`), and
/// where the platform says so the others (host or network unreachable,
/// prohibited, too big: see [`sockopt::is_icmp_errno`](super::sockopt::is_icmp_errno)).
pub(crate) fn is_icmp_report(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionReset
    ) || e.raw_os_error().is_some_and(super::sockopt::is_icmp_errno)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The errors an ICMP message leaves on a connected socket are reports,
    /// not a broken socket; others are not.
    #[test]
    fn icmp_reports_are_told_from_other_errors() {
        assert!(is_icmp_report(&io::ErrorKind::ConnectionRefused.into()));
        assert!(!is_icmp_report(&io::ErrorKind::NotConnected.into()));
        #[cfg(target_os = "linux")]
        for (code, report) in [
            (libc::EHOSTUNREACH, true),
            (libc::ENETUNREACH, true),
            (libc::EMSGSIZE, true),
            (libc::EACCES, true),
            (libc::EPROTO, true),
            (libc::EBADF, false),
            (libc::ENOMEM, false),
        ] {
            assert_eq!(
                is_icmp_report(&io::Error::from_raw_os_error(code)),
                report,
                "{code}"
            );
        }
    }

    /// A datagram a connected socket reads is held at its own size, not in
    /// a buffer of MAX_DATAGRAM (each small datagram the application kept
    /// held 64 KiB).
    #[tokio::test]
    async fn a_received_datagram_holds_its_own_size() {
        let peer = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let t =
            UdpTransport::connect(peer.local_addr().unwrap(), &SocketOptions::default()).unwrap();
        let me = t.socket().local_addr().unwrap();
        for m in [&b"small"[..], &[7u8; 3000][..], b""] {
            peer.send_to(m, me).await.unwrap();
            let Recv::Datagram(d) = t.read().await.unwrap() else {
                panic!("a datagram");
            };
            assert_eq!(&d[..], m);
            if m.is_empty() {
                continue; // no allocation at all
            }
            let held = d.try_into_mut().expect("the only handle").capacity();
            assert!(held <= m.len().max(64), "{held} bytes held for {}", m.len());
        }
    }

    /// While the flow table is full, a flood of datagrams from new sources
    /// (spoofable: no handshake) makes the Listener sweep the table at most
    /// once per FULL_SWEEP_EVERY, not once per datagram; each is refused,
    /// and counted.
    #[test]
    fn a_full_table_is_swept_at_most_once_per_interval_under_a_flood() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let _g = rt.enter();
        let std = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        std.set_nonblocking(true).unwrap();
        let io = Arc::new(tokio::net::UdpSocket::from_std(std).unwrap());
        let (tx, _rx) = futures::channel::mpsc::unbounded();
        let limits = crate::listener::ListenerLimits::default().with_udp_flows(4);
        let mut peers = UdpPeers::new(io, crate::backend::IncomingTx::new(tx, limits));
        // Four live flows (their Connections wait in the channel): full.
        for port in 1000..1004u16 {
            assert!(peers.deliver(SocketAddr::from(([127, 0, 0, 1], port)), vec![1]));
        }
        let started = Instant::now();
        let before = peers.sweeps;
        let flood = 10_000u16;
        for port in 0..flood {
            peers.deliver(SocketAddr::from(([127, 0, 0, 2], port)), vec![2]);
        }
        let sweeps = peers.sweeps - before;
        let allowed = 2 + (started.elapsed().as_millis() / FULL_SWEEP_EVERY.as_millis()) as usize;
        assert!(
            sweeps <= allowed,
            "{sweeps} sweeps for {flood} datagrams from new sources (at most {allowed})"
        );
        assert_eq!(peers.refused, u64::from(flood), "each refused, counted");
    }
}
