//! The native WebRTC peer (`webrtc` stack) on str0m, a sans-IO WebRTC
//! implementation: data channels only, over one tokio UDP socket.
//!
//! - **Peer**: one [`Rtc`] and its UDP socket, owned by a driver task that
//!   feeds it datagrams, timeouts and the handles' commands, and drains its
//!   output after every mutation (str0m's single-mutation rule).
//! - **Candidates**: one host candidate, the socket's address. The socket is
//!   bound to the LocalEndpoint's IP address, or 127.0.0.1 when none is
//!   given (str0m rejects an unspecified address as a candidate); no STUN or
//!   TURN yet.
//! - **Channels**: each data channel is one [`WebrtcTransport`] (one
//!   Connection); messages go binary. `send` resolves when str0m's SCTP send
//!   buffer took the message (backpressure); incoming messages are queued per
//!   channel. Clone opens a new in-band (DCEP) channel on the same peer.
//! - **Receive backpressure**: the messages waiting for their readers take
//!   at most [`RECV_QUEUE_MAX`] bytes per peer connection. Past it the
//!   driver drops the DTLS records (which carry SCTP) arriving on the
//!   socket, and keeps only STUN (ICE stays alive): the peer's SCTP
//!   retransmits them once the readers caught up, and meanwhile its sends
//!   wait. str0m reads SCTP streams out as data arrives, so the SCTP
//!   receive window cannot do this; the cost is a retransmission delay
//!   (the peer's RTO) after a long pause, and while paused this peer's
//!   own sends are not acknowledged either.
//! - **Reading while sending**: one input can let SCTP send a whole window
//!   (1 MiB), and the driver must send all of it before the next input
//!   (str0m's rule). Meanwhile it moves what arrives on the socket into an
//!   inbox of at most [`INBOX_MAX`] datagrams, fed to str0m one at a time
//!   afterwards. Without the inbox a slow sender (an unoptimised build, a
//!   small CPU) read one datagram per window: the kernel dropped the rest,
//!   so each SACK it read was stale and let a whole window out again, and
//!   the peer's STUN was dropped with them until ICE gave up ("ICE
//!   disconnected"). The handles' commands wait until the inbox is empty:
//!   taking turns with them made the sender greedier than its peer could
//!   take in an unoptimised build, and it lost more to retransmission
//!   timeouts than the commands gained.
//! - **Close and drop**: closing a channel (or dropping its last handle)
//!   waits until SCTP has the channel's queued messages acknowledged, then
//!   resets the stream; when no handle of a peer is left (channels, pending
//!   incoming channels, the peer), the driver does the same for every
//!   channel, for at most [`DRAIN_MAX`], then closes the peer connection
//!   and the socket. Abort closes at once.

use super::{Incoming, Transport};
use crate::backend::SocketOptions;
use crate::capability::Capabilities;
use crate::properties::{PropertyValue, TransportProperties};
use crate::rendezvous::DataChannelOptions;
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Once};
use std::time::{Duration, Instant};
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::channel::{ChannelConfig, ChannelId, Reliability};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};

/// Install str0m's crypto provider once per process.
fn init_crypto() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| str0m::crypto::from_feature_flags().install_process_default());
}

fn other(e: impl fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

/// Most bytes of received messages a peer connection keeps waiting for its
/// channels' readers; see the module's doc.
pub(crate) const RECV_QUEUE_MAX: usize = 4 << 20;

/// How long a peer connection whose handles are all gone keeps running to
/// deliver what its channels still hold.
pub(crate) const DRAIN_MAX: Duration = Duration::from_secs(10);

/// Most datagrams a driver reads ahead while it drains output; past it they
/// wait in the socket (and the kernel drops what overflows its buffer).
/// A whole window (1 MiB, about 900 packets) brings about 450 SACKs, plus
/// STUN: 1024 holds them, at most about 2 MiB of memory.
pub(crate) const INBOX_MAX: usize = 1024;

/// How long a drain sends before it reads what arrived meanwhile. Linux's
/// default receive buffer (208 KiB) holds a few hundred small datagrams,
/// which a peer acknowledging a fast sender fills in tens of milliseconds.
const READ_AHEAD_EVERY: Duration = Duration::from_millis(2);

/// The largest datagram the driver reads: str0m and browsers send at most
/// 1200 bytes of UDP payload. A longer one is cut short (Linux) or fails
/// the read (Windows), and is then not valid STUN or DTLS.
const DATAGRAM_MAX: usize = 2048;

/// A read error that reports an ICMP error for an earlier datagram (a
/// closed port; Windows says "reset"), not a broken socket: reading goes on.
fn is_icmp_report(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionReset
    )
}

/// The first byte of a DTLS record on the socket (RFC 7983 demultiplexing).
fn is_dtls(packet: &[u8]) -> bool {
    packet.first().is_some_and(|b| (20..=63).contains(b))
}

/// What a channel's reader gets.
enum ChanEvent {
    Data(Vec<u8>),
    /// The channel or the peer connection ended, and why.
    Ended(io::ErrorKind, String),
}

enum Cmd {
    Write {
        id: ChannelId,
        data: Vec<u8>,
        reply: oneshot::Sender<io::Result<()>>,
    },
    Open {
        options: DataChannelOptions,
        reply: oneshot::Sender<io::Result<Transport>>,
    },
    /// Close a channel: once SCTP has its data acknowledged, or (`now`) at once.
    Close { id: ChannelId, now: bool },
    /// Answer once the channel is closed (after its data was acknowledged).
    WhenClosed {
        id: ChannelId,
        reply: oneshot::Sender<()>,
    },
    /// Close the whole peer connection (AbortGroup / CloseGroup).
    CloseAll,
}

struct ChanInner {
    id: ChannelId,
    cmd: mpsc::UnboundedSender<Cmd>,
    rx: futures::lock::Mutex<mpsc::UnboundedReceiver<ChanEvent>>,
    /// The bytes waiting for the readers of this peer's channels.
    queued: Arc<AtomicUsize>,
    ended: crate::backend::Ended,
    local: SocketAddr,
    remote: Option<SocketAddr>,
    options: DataChannelOptions,
}

impl Drop for ChanInner {
    fn drop(&mut self) {
        // What nobody will read no longer counts against the peer's queue.
        let rx = self.rx.get_mut();
        while let Ok(ev) = rx.try_recv() {
            if let ChanEvent::Data(d) = ev {
                self.queued.fetch_sub(d.len(), Ordering::Relaxed);
            }
        }
        let _ = self.cmd.send(Cmd::Close {
            id: self.id,
            now: false,
        });
    }
}

/// One data channel of a native peer connection. Clones share it.
#[derive(Clone)]
pub(crate) struct WebrtcTransport {
    inner: Arc<ChanInner>,
}

impl fmt::Debug for WebrtcTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebrtcTransport")
            .field("label", &self.inner.options.label)
            .field("remote", &self.inner.remote)
            .finish()
    }
}

impl WebrtcTransport {
    fn ended(&self) -> Option<io::Error> {
        self.inner.ended.get()
    }

    fn end(&self, kind: io::ErrorKind, msg: String) -> io::Error {
        self.inner.ended.set(kind, msg)
    }

    /// The next message; an error once the channel closed.
    pub(crate) async fn read(&self) -> io::Result<crate::backend::Recv> {
        if let Some(e) = self.ended() {
            return Err(e);
        }
        let mut rx = self.inner.rx.lock().await;
        if let Some(e) = self.ended() {
            return Err(e);
        }
        match rx.recv().await {
            Some(ChanEvent::Data(d)) => {
                self.inner.queued.fetch_sub(d.len(), Ordering::Relaxed);
                Ok(crate::backend::Recv::Datagram(d.into()))
            }
            Some(ChanEvent::Ended(kind, msg)) => Err(self.end(kind, msg)),
            None => Err(self.end(
                io::ErrorKind::ConnectionAborted,
                "the WebRTC peer connection ended".into(),
            )),
        }
    }

    /// Send one message; resolves when the SCTP send buffer took it.
    pub(crate) async fn send(&self, data: &[u8]) -> io::Result<()> {
        if let Some(e) = self.ended() {
            return Err(e);
        }
        let (reply, rx) = oneshot::channel();
        self.inner
            .cmd
            .send(Cmd::Write {
                id: self.inner.id,
                data: data.to_vec(),
                reply,
            })
            .map_err(|_| other("the WebRTC peer connection ended"))?;
        rx.await
            .map_err(|_| other("the WebRTC peer connection ended"))?
    }

    /// Close the channel (SCTP stream reset) once SCTP has its queued
    /// messages acknowledged; the peer's reads end then.
    pub(crate) fn shutdown_write(&self) -> io::Result<()> {
        let _ = self.inner.cmd.send(Cmd::Close {
            id: self.inner.id,
            now: false,
        });
        Ok(())
    }

    /// After `shutdown_write`: resolves once the channel closed, its
    /// messages acknowledged by the peer's SCTP.
    pub(crate) async fn delivered(&self) -> io::Result<()> {
        let (reply, rx) = oneshot::channel();
        self.inner
            .cmd
            .send(Cmd::WhenClosed {
                id: self.inner.id,
                reply,
            })
            .map_err(|_| other("the WebRTC peer connection ended"))?;
        rx.await.map_err(|_| {
            other("the WebRTC peer connection ended before the channel's data was acknowledged")
        })
    }

    /// Close the channel and end every pending and later read at once.
    pub(crate) fn abort(&self) {
        let _ = self.inner.cmd.send(Cmd::Close {
            id: self.inner.id,
            now: true,
        });
        self.end(
            io::ErrorKind::ConnectionAborted,
            "the WebRTC data channel was aborted".into(),
        );
    }

    pub(crate) fn local_addr(&self) -> Option<SocketAddr> {
        Some(self.inner.local)
    }

    pub(crate) fn remote_addr(&self) -> Option<SocketAddr> {
        self.inner.remote
    }

    /// Clone: a new channel on the same peer connection, with options from `props`.
    pub(crate) async fn open_sibling(&self, props: &TransportProperties) -> io::Result<Transport> {
        let options = DataChannelOptions::from_properties(props)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.message))?;
        let (reply, rx) = oneshot::channel();
        self.inner
            .cmd
            .send(Cmd::Open { options, reply })
            .map_err(|_| other("the WebRTC peer connection ended"))?;
        rx.await
            .map_err(|_| other("the WebRTC peer connection ended"))?
    }

    /// CloseGroup / AbortGroup: close the peer connection.
    pub(crate) fn close_peer(&self) {
        let _ = self.inner.cmd.send(Cmd::CloseAll);
    }

    /// (reliable, ordered) of the channel.
    pub(crate) fn delivery(&self) -> (bool, bool) {
        (self.inner.options.reliable(), self.inner.options.ordered)
    }

    /// `webrtc.*` protocol-specific properties of the channel.
    pub(crate) fn protocol_property(&self, name: &str) -> Option<PropertyValue> {
        channel_property(&self.inner.options, name)
    }
}

/// `webrtc.ordered`, `webrtc.maxretransmits`, `webrtc.maxpacketlifetime`,
/// `webrtc.label` (normalized names) of a channel's options.
pub(crate) fn channel_property(o: &DataChannelOptions, name: &str) -> Option<PropertyValue> {
    let int = |v: Option<u16>| match v {
        Some(v) => PropertyValue::Integer(v.into()),
        None => PropertyValue::Text("notApplicable".into()),
    };
    Some(match name {
        "webrtc.ordered" => PropertyValue::Bool(o.ordered),
        "webrtc.maxretransmits" => int(o.max_retransmits),
        "webrtc.maxpacketlifetime" => int(o.max_packet_life_time),
        "webrtc.label" => PropertyValue::Text(o.label.clone()),
        _ => return None,
    })
}

fn config(o: &DataChannelOptions) -> ChannelConfig {
    ChannelConfig {
        label: o.label.clone(),
        ordered: o.ordered,
        reliability: match (o.max_retransmits, o.max_packet_life_time) {
            (Some(r), _) => Reliability::MaxRetransmits { retransmits: r },
            (None, Some(l)) => Reliability::MaxPacketLifetime { lifetime: l },
            (None, None) => Reliability::Reliable,
        },
        ..Default::default()
    }
}

fn options_of(c: &ChannelConfig) -> DataChannelOptions {
    let (max_retransmits, max_packet_life_time) = match c.reliability {
        Reliability::Reliable => (None, None),
        Reliability::MaxRetransmits { retransmits } => (Some(retransmits), None),
        Reliability::MaxPacketLifetime { lifetime } => (None, Some(lifetime)),
    };
    DataChannelOptions {
        label: c.label.clone(),
        ordered: c.ordered,
        max_retransmits,
        max_packet_life_time,
    }
}

/// A new Rtc with a UDP socket and its host candidate.
fn new_peer(opts: &SocketOptions) -> io::Result<(Rtc, std::net::UdpSocket)> {
    init_crypto();
    let bind = match opts.local {
        Some(a) if !a.ip().is_unspecified() => a,
        Some(a) => SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), a.port()),
        None => SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
    };
    let socket = std::net::UdpSocket::bind(bind).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("binding the WebRTC UDP socket on {bind}: {e}"),
        )
    })?;
    socket.set_nonblocking(true)?;
    let local = socket.local_addr()?;
    // Room for the largest message (256 KiB) several times over, as the
    // browser's high-water mark.
    let mut rtc = Rtc::builder()
        .set_sctp_max_buffered_amount(SCTP_BUFFER)
        .build(Instant::now());
    let cand =
        Candidate::host(local, "udp").map_err(|e| other(format!("host candidate {local}: {e}")))?;
    rtc.add_local_candidate(cand);
    Ok((rtc, socket))
}

/// str0m's SCTP send buffer per peer connection: `send` waits while it is full.
const SCTP_BUFFER: usize = 1 << 20;

/// An offer made, waiting for the answer.
pub(crate) struct WebrtcOffer {
    rtc: Rtc,
    socket: std::net::UdpSocket,
    pending: SdpPendingOffer,
    sdp: String,
    first: ChannelId,
    options: DataChannelOptions,
}

impl WebrtcOffer {
    /// Bind, add the host candidate and the first data channel, make the offer.
    pub(crate) async fn create(
        opts: &SocketOptions,
        channel: &DataChannelOptions,
    ) -> io::Result<WebrtcOffer> {
        let (mut rtc, socket) = new_peer(opts)?;
        let mut api = rtc.sdp_api();
        let first = api.add_channel_with_config(config(channel));
        let (offer, pending) = api
            .apply()
            .ok_or_else(|| other("str0m made no offer for a data channel"))?;
        Ok(WebrtcOffer {
            rtc,
            socket,
            pending,
            sdp: offer.to_sdp_string(),
            first,
            options: channel.clone(),
        })
    }

    /// The offer's SDP.
    pub(crate) fn sdp(&self) -> String {
        self.sdp.clone()
    }

    /// Apply the peer's answer and start the peer connection.
    pub(crate) async fn accept_answer(mut self, sdp: &str) -> io::Result<WebrtcPeer> {
        let answer = SdpAnswer::from_sdp_string(sdp).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("not an SDP answer: {e}"),
            )
        })?;
        self.rtc
            .sdp_api()
            .accept_answer(self.pending, answer)
            .map_err(|e| {
                io::Error::new(io::ErrorKind::InvalidData, format!("the SDP answer: {e}"))
            })?;
        let mut own = HashMap::new();
        own.insert(self.first, self.options);
        WebrtcPeer::start(self.rtc, self.socket, own)
    }
}

/// A running peer connection: yields its data channels.
pub(crate) struct WebrtcPeer {
    channels: futures::lock::Mutex<IncomingRx>,
    local: SocketAddr,
    /// Keeps the driver running until a channel handle exists.
    _keep: mpsc::UnboundedSender<Cmd>,
}

type IncomingRx = futures::channel::mpsc::UnboundedReceiver<io::Result<Incoming>>;

impl WebrtcPeer {
    /// Answer an offer: bind, add the host candidate, accept, start.
    pub(crate) async fn answer(
        offer_sdp: &str,
        opts: &SocketOptions,
    ) -> io::Result<(WebrtcPeer, String)> {
        let offer = SdpOffer::from_sdp_string(offer_sdp).map_err(|e| {
            io::Error::new(io::ErrorKind::InvalidData, format!("not an SDP offer: {e}"))
        })?;
        let (mut rtc, socket) = new_peer(opts)?;
        let answer = rtc.sdp_api().accept_offer(offer).map_err(|e| {
            io::Error::new(io::ErrorKind::InvalidData, format!("the SDP offer: {e}"))
        })?;
        let peer = WebrtcPeer::start(rtc, socket, HashMap::new())?;
        Ok((peer, answer.to_sdp_string()))
    }

    fn start(
        rtc: Rtc,
        socket: std::net::UdpSocket,
        own: HashMap<ChannelId, DataChannelOptions>,
    ) -> io::Result<WebrtcPeer> {
        let (driver, peer) = Driver::new(rtc, socket, own)?;
        // The driver holds only a weak sender: it ends when every handle is gone.
        tokio::spawn(driver.run());
        Ok(peer)
    }

    /// The first data channel: the offerer's own, or the first the offerer opened.
    pub(crate) async fn first_channel(&self) -> io::Result<Transport> {
        self.next_channel().await
    }

    async fn next_channel(&self) -> io::Result<Transport> {
        use futures::StreamExt;
        match self.channels.lock().await.next().await {
            Some(Ok(i)) => Ok(i.transport),
            Some(Err(e)) => Err(e),
            None => Err(other(
                "the WebRTC peer connection ended before a data channel opened",
            )),
        }
    }

    /// The peer's further channels, as a Listener backend.
    pub(crate) fn into_incoming(self) -> super::BackendListener {
        super::BackendListener::from_channel(self.channels.into_inner(), self.local)
    }
}

struct ChanState {
    tx: mpsc::UnboundedSender<ChanEvent>,
}

struct Driver {
    rtc: Rtc,
    socket: UdpSocket,
    /// The same socket, non-blocking, for [`Driver::read_ahead`].
    reader: std::net::UdpSocket,
    /// Datagrams read during a drain, with when they were read.
    inbox: VecDeque<(Instant, SocketAddr, Vec<u8>)>,
    local: SocketAddr,
    remote: Option<SocketAddr>,
    cmd_weak: mpsc::WeakUnboundedSender<Cmd>,
    cmd_rx: mpsc::UnboundedReceiver<Cmd>,
    incoming: futures::channel::mpsc::UnboundedSender<io::Result<Incoming>>,
    chans: HashMap<ChannelId, ChanState>,
    /// Channels we created that are not open yet, with their options.
    own_pending: HashMap<ChannelId, DataChannelOptions>,
    /// Clone requests waiting for their channel to open.
    open_replies: HashMap<ChannelId, oneshot::Sender<io::Result<Transport>>>,
    writes: VecDeque<(ChannelId, Vec<u8>, oneshot::Sender<io::Result<()>>)>,
    /// The bytes waiting for the channels' readers (`RECV_QUEUE_MAX`).
    queued: Arc<AtomicUsize>,
    /// Channels closed gracefully, open until SCTP has their data acknowledged.
    closing: Vec<ChannelId>,
    /// `WhenClosed` replies for channels in `closing`.
    closed_replies: Vec<(ChannelId, oneshot::Sender<()>)>,
    /// Since when every handle is gone and the driver only delivers what is left.
    draining: Option<Instant>,
}

/// Without ICE connectivity for this long, a peer connection fails.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

impl Driver {
    /// A driver for `rtc` on `socket`, not running yet, and the peer's handle.
    fn new(
        rtc: Rtc,
        socket: std::net::UdpSocket,
        own: HashMap<ChannelId, DataChannelOptions>,
    ) -> io::Result<(Driver, WebrtcPeer)> {
        // A second handle on the same socket reads ahead during a drain:
        // it reads whether or not tokio's reactor has run since.
        let reader = socket.try_clone()?;
        reader.set_nonblocking(true)?;
        let socket = UdpSocket::from_std(socket)?;
        let local = socket.local_addr()?;
        let (tx, channels) = futures::channel::mpsc::unbounded();
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let driver = Driver {
            rtc,
            socket,
            reader,
            inbox: VecDeque::new(),
            local,
            remote: None,
            cmd_weak: cmd_tx.downgrade(),
            cmd_rx,
            incoming: tx,
            chans: HashMap::new(),
            own_pending: own,
            open_replies: HashMap::new(),
            writes: VecDeque::new(),
            queued: Arc::default(),
            closing: Vec::new(),
            closed_replies: Vec::new(),
            draining: None,
        };
        let peer = WebrtcPeer {
            channels: futures::lock::Mutex::new(channels),
            local,
            _keep: cmd_tx,
        };
        Ok((driver, peer))
    }

    fn transport(&mut self, id: ChannelId, options: DataChannelOptions) -> Option<Transport> {
        let cmd = self.cmd_weak.upgrade()?;
        let (tx, rx) = mpsc::unbounded_channel();
        self.chans.insert(id, ChanState { tx });
        Some(Transport::Webrtc(WebrtcTransport {
            inner: Arc::new(ChanInner {
                id,
                cmd,
                rx: futures::lock::Mutex::new(rx),
                queued: self.queued.clone(),
                ended: Default::default(),
                local: self.local,
                remote: self.remote,
                options,
            }),
        }))
    }

    fn incoming(&self, t: Transport) {
        let remote = self
            .remote
            .unwrap_or_else(|| SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0));
        let _ = self.incoming.unbounded_send(Ok(Incoming {
            transport: t,
            caps: &Capabilities::WEBRTC,
            remote,
            group: Some(0),
            room: Default::default(),
        }));
    }

    /// Drain the Rtc's output; returns the next timeout, or an error that ends the peer.
    async fn drain(&mut self) -> Result<Instant, String> {
        let mut read = Instant::now();
        loop {
            let out = self.rtc.poll_output().map_err(|e| format!("WebRTC: {e}"))?;
            match out {
                Output::Timeout(t) => return Ok(t),
                Output::Transmit(t) => {
                    let _ = self.socket.send_to(&t.contents, t.destination).await;
                    if read.elapsed() >= READ_AHEAD_EVERY {
                        self.read_ahead()?;
                        read = Instant::now();
                    }
                }
                Output::Event(e) => self.event(e)?,
            }
        }
    }

    /// Move the datagrams waiting on the socket into the inbox, without
    /// blocking and without touching the Rtc (a drain is under way).
    fn read_ahead(&mut self) -> Result<(), String> {
        let mut buf = [0u8; DATAGRAM_MAX];
        while self.inbox.len() < INBOX_MAX {
            match self.reader.recv_from(&mut buf) {
                Ok((n, source)) => {
                    self.inbox
                        .push_back((Instant::now(), source, buf[..n].to_vec()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if is_icmp_report(&e) => {}
                Err(e) => return Err(format!("WebRTC UDP socket: {e}")),
            }
        }
        Ok(())
    }

    /// Feed one datagram to the Rtc (one mutation), unless it is a DTLS
    /// record and the readers are behind (see the module's doc).
    fn receive(&mut self, at: Instant, source: SocketAddr, packet: &[u8]) -> Result<(), String> {
        if self.queued.load(Ordering::Relaxed) > RECV_QUEUE_MAX && is_dtls(packet) {
            return Ok(()); // the readers are behind: the peer retransmits later
        }
        let Ok(contents) = packet.try_into() else {
            return Ok(());
        };
        let input = Input::Receive(
            at,
            Receive {
                proto: Protocol::Udp,
                source,
                destination: self.local,
                contents,
            },
        );
        if self.rtc.accepts(&input) {
            self.remote.get_or_insert(source);
            self.rtc
                .handle_input(input)
                .map_err(|e| format!("WebRTC input: {e}"))?;
        }
        Ok(())
    }

    fn event(&mut self, e: Event) -> Result<(), String> {
        match e {
            Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                return Err("ICE disconnected: the peer is unreachable".into())
            }
            Event::ChannelOpen(id, label) => {
                if let Some(options) = self.own_pending.remove(&id) {
                    let t = self.transport(id, options);
                    match (self.open_replies.remove(&id), t) {
                        (Some(reply), Some(t)) => {
                            let _ = reply.send(Ok(t));
                        }
                        (None, Some(t)) => self.incoming(t),
                        _ => {}
                    }
                } else {
                    let options = self
                        .rtc
                        .channel(id)
                        .and_then(|c| c.config().map(options_of))
                        .unwrap_or(DataChannelOptions {
                            label,
                            ordered: true,
                            max_retransmits: None,
                            max_packet_life_time: None,
                        });
                    if let Some(t) = self.transport(id, options) {
                        self.incoming(t);
                    }
                }
            }
            Event::ChannelData(d) => {
                if let Some(c) = self.chans.get(&d.id) {
                    let len = d.data.len();
                    if c.tx.send(ChanEvent::Data(d.data)).is_ok() {
                        self.queued.fetch_add(len, Ordering::Relaxed);
                    }
                }
            }
            Event::ChannelClose(id) => {
                if let Some(c) = self.chans.remove(&id) {
                    let _ = c.tx.send(ChanEvent::Ended(
                        io::ErrorKind::UnexpectedEof,
                        "the peer closed the WebRTC data channel".into(),
                    ));
                    // Our side of the stream resets too (RFC 8831 §6.7): the
                    // peer's channel is closed only then.
                    self.rtc.direct_api().close_data_channel(id);
                }
                if let Some(r) = self.open_replies.remove(&id) {
                    let _ = r.send(Err(other("the peer refused the new data channel")));
                }
            }
            Event::Closed => return Err("the peer closed the WebRTC peer connection".into()),
            _ => {}
        }
        Ok(())
    }

    /// Hand queued writes to SCTP while it has room.
    fn flush_writes(&mut self) -> Result<(), String> {
        while let Some((id, data, _)) = self.writes.front() {
            let Some(mut ch) = self.rtc.channel(*id) else {
                let (_, _, reply) = self.writes.pop_front().expect("front");
                let _ = reply.send(Err(io::Error::new(
                    io::ErrorKind::NotConnected,
                    "the WebRTC data channel is closed",
                )));
                continue;
            };
            match ch.write(true, data) {
                Ok(true) => {
                    let (_, _, reply) = self.writes.pop_front().expect("front");
                    let _ = reply.send(Ok(()));
                }
                Ok(false) => return Ok(()),
                Err(e) => {
                    let (_, _, reply) = self.writes.pop_front().expect("front");
                    let _ = reply.send(Err(other(format!("WebRTC write: {e}"))));
                }
            }
        }
        Ok(())
    }

    fn command(&mut self, cmd: Cmd) -> bool {
        match cmd {
            Cmd::Write { id, data, reply } => {
                if !self.chans.contains_key(&id) {
                    let _ = reply.send(Err(io::Error::new(
                        io::ErrorKind::NotConnected,
                        "the WebRTC data channel is closed",
                    )));
                } else {
                    self.writes.push_back((id, data, reply));
                }
            }
            Cmd::Open { options, reply } => {
                let id = self.rtc.direct_api().create_data_channel(config(&options));
                self.own_pending.insert(id, options);
                self.open_replies.insert(id, reply);
            }
            Cmd::Close { id, now } => {
                if let Some(c) = self.chans.remove(&id) {
                    let _ = c.tx.send(ChanEvent::Ended(
                        io::ErrorKind::ConnectionAborted,
                        "the WebRTC data channel was closed locally".into(),
                    ));
                    if now {
                        // Its queued writes fail (their replies dropped: "ended").
                        self.writes.retain(|(w, _, _)| *w != id);
                        self.rtc.direct_api().close_data_channel(id);
                    } else {
                        self.closing.push(id);
                    }
                }
            }
            Cmd::WhenClosed { id, reply } => {
                if self.closing.contains(&id) {
                    self.closed_replies.push((id, reply));
                } else {
                    let _ = reply.send(());
                }
            }
            Cmd::CloseAll => return false,
        }
        true
    }

    /// Nothing of channel `id` waits to be written or acknowledged.
    fn drained(&mut self, id: ChannelId) -> bool {
        !self.writes.iter().any(|(w, _, _)| *w == id)
            && self
                .rtc
                .channel(id)
                .is_none_or(|mut c| c.buffered_amount() == 0)
    }

    /// Close the gracefully closed channels whose data is acknowledged, and
    /// answer who waits for that.
    fn close_drained(&mut self) {
        let mut i = 0;
        while i < self.closing.len() {
            let id = self.closing[i];
            if self.drained(id) {
                self.closing.swap_remove(i);
                self.rtc.direct_api().close_data_channel(id);
                let (done, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.closed_replies)
                    .into_iter()
                    .partition(|(c, _)| *c == id);
                self.closed_replies = waiting;
                for (_, reply) in done {
                    let _ = reply.send(());
                }
            } else {
                i += 1;
            }
        }
    }

    fn fail_all(&mut self, why: &str) {
        for (_, c) in self.chans.drain() {
            let _ = c.tx.send(ChanEvent::Ended(
                io::ErrorKind::ConnectionReset,
                why.to_string(),
            ));
        }
        for (_, r) in self.open_replies.drain() {
            let _ = r.send(Err(other(why)));
        }
        for (_, _, r) in self.writes.drain(..) {
            let _ = r.send(Err(other(why)));
        }
        let _ = self.incoming.unbounded_send(Err(other(why)));
    }

    async fn run(mut self) {
        let started = Instant::now();
        let mut buf = vec![0u8; DATAGRAM_MAX];
        let why = loop {
            let deadline = match self.drain().await {
                Ok(t) => t,
                Err(e) => break e,
            };
            if let Err(e) = self.flush_writes() {
                break e;
            }
            self.close_drained();
            if let Some(since) = self.draining {
                // Every handle is gone: close once everything is delivered.
                if (self.writes.is_empty() && self.closing.is_empty())
                    || since.elapsed() > DRAIN_MAX
                {
                    // The channels' stream resets go out before the end.
                    let _ = self.drain().await;
                    self.rtc.disconnect();
                    let _ = self.drain().await;
                    return;
                }
            }
            // A write is a mutation too: drain again if it produced output.
            let deadline = match self.drain().await {
                Ok(t) => t.min(deadline),
                Err(e) => break e,
            };
            if self.remote.is_none() && started.elapsed() > CONNECT_TIMEOUT {
                break format!("no ICE connectivity with the peer within {CONNECT_TIMEOUT:?}");
            }
            // What a drain read ahead goes in first, one datagram per turn.
            // The handles' commands wait meanwhile: a write then waits for
            // SCTP to send what it holds (see the module's doc).
            if let Some((at, source, packet)) = self.inbox.pop_front() {
                if let Err(e) = self.receive(at, source, &packet) {
                    break e;
                }
                continue;
            }
            let now = Instant::now();
            let wait = deadline
                .saturating_duration_since(now)
                .min(Duration::from_secs(1));
            tokio::select! {
                r = self.socket.recv_from(&mut buf) => match r {
                    Ok((n, source)) => {
                        if let Err(e) = self.receive(Instant::now(), source, &buf[..n]) {
                            break e;
                        }
                    }
                    Err(e) if is_icmp_report(&e) => {}
                    Err(e) => break format!("WebRTC UDP socket: {e}"),
                },
                cmd = self.cmd_rx.recv(), if self.draining.is_none() => match cmd {
                    Some(cmd) => {
                        if !self.command(cmd) {
                            break "the WebRTC peer connection was closed locally".into();
                        }
                    }
                    // Every handle is gone: deliver what is left, then close.
                    None => self.draining = Some(Instant::now()),
                },
                _ = tokio::time::sleep(wait) => {
                    if let Err(e) = self.rtc.handle_input(Input::Timeout(Instant::now())) {
                        break format!("WebRTC timeout: {e}");
                    }
                }
            }
        };
        self.rtc.disconnect();
        let _ = self.drain().await;
        self.fail_all(&why);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// However fast datagrams arrive during a drain, what is read ahead
    /// stays within `INBOX_MAX`: the rest waits in the socket, in order.
    #[tokio::test]
    async fn read_ahead_is_bounded() {
        let (rtc, socket) = new_peer(&SocketOptions::default()).unwrap();
        let (mut driver, _peer) = Driver::new(rtc, socket, HashMap::new()).unwrap();
        let peer = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut sent = 0u32;
        // The kernel holds a few hundred small datagrams at most: send in
        // rounds, reading ahead after each, as a long drain does.
        for _ in 0..40 {
            for _ in 0..50 {
                peer.send_to(&sent.to_be_bytes(), driver.local).unwrap();
                sent += 1;
            }
            driver.read_ahead().unwrap();
        }
        assert_eq!(driver.inbox.len(), INBOX_MAX);
        for (i, (_, source, packet)) in driver.inbox.iter().enumerate() {
            assert_eq!(*source, peer.local_addr().unwrap());
            assert_eq!(packet.as_slice(), (i as u32).to_be_bytes());
        }
        // The next datagram is still in the socket.
        let mut buf = [0u8; 4];
        let (n, _) = driver.reader.recv_from(&mut buf).unwrap();
        assert_eq!(buf[..n], (INBOX_MAX as u32).to_be_bytes());
    }
}
