//! What a Listener may spend on peers: the bounds that keep one Listener
//! serving when peers misbehave on purpose (floods of connections, of UDP
//! sources or of QUIC Initials, peers that stay silent in a handshake).
//!
//! RFC 9622 leaves these to the implementation (§7.2 names only
//! SetNewConnectionLimit). Every bound pushes back instead of losing
//! anything silently: past it the Listener stops accepting (TCP peers wait in
//! the kernel's backlog, QUIC Initials in quinn's queue) or refuses and
//! reports (new UDP sources, datagrams past the buffer), as each field says.

use crate::error::Error;
use std::time::Duration;

/// The bounds of a Listener ([`Preconnection::set_listener_limits`]):
/// settable, with defaults sized for one server process serving thousands
/// of peers. Built with `ListenerLimits::default()` and the `with_*`
/// methods; `Listen` refuses a value that could accept nothing (0) with
/// InvalidConfiguration naming the field.
///
/// They apply natively. In the browser a Listener only receives the data
/// channels a WebRTC peer opens on a Rendezvous, and none of them applies.
///
/// [`Preconnection::set_listener_limits`]: crate::Preconnection::set_listener_limits
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerLimits {
    pending_incoming: usize,
    concurrent_handshakes: usize,
    handshake_timeout: Duration,
    give_way_silent: Duration,
    give_way_handshaking: Duration,
    waiting_peers: Option<usize>,
    udp_flows: usize,
    udp_flow_datagrams: usize,
    udp_buffer_bytes: usize,
    udp_flow_idle_timeout: Duration,
    quic_peers: usize,
    quic_retry_above: usize,
}

impl Default for ListenerLimits {
    fn default() -> Self {
        ListenerLimits {
            pending_incoming: 256,
            concurrent_handshakes: 256,
            handshake_timeout: Duration::from_secs(10),
            give_way_silent: Duration::from_millis(200),
            give_way_handshaking: Duration::from_millis(500),
            waiting_peers: None,
            udp_flows: 1024,
            udp_flow_datagrams: 1024,
            udp_buffer_bytes: 4 << 20,
            udp_flow_idle_timeout: Duration::from_secs(120),
            quic_peers: 65_536,
            quic_retry_above: 64,
        }
    }
}

impl ListenerLimits {
    /// How many incoming connections may be pending at once (default 256):
    /// being accepted, sniffed or handshaking in their stack (TLS,
    /// WebSocket, QUIC, WebTransport), or waiting for the application to take
    /// them. Past it the Listener stops accepting: TCP peers wait in the
    /// kernel's backlog (on a TLS or WebSocket port, first outside the
    /// places: [`with_waiting_peers`](Self::with_waiting_peers)), QUIC
    /// Initials in quinn's queue, and datagrams from new UDP sources are
    /// refused (reported). On a TCP port that sniffs or handshakes (TLS,
    /// WebSocket), while every place is taken, a peer that has sent nothing
    /// for 200 ms, or has been handshaking for 500 ms, gives its place to a
    /// new one that needs it (dropped and reported), so silent or stalling
    /// peers cannot hold them all (slowloris). A peer whose bytes wait unread
    /// in its socket keeps its place: then this process is behind (short of
    /// CPU), not the peer, and the Listener pushes back instead. The two ages
    /// are [`with_give_way_after`](Self::with_give_way_after).
    ///
    /// QUIC and WebTransport: a connection keeps its handshake's place until
    /// its first stream is taken (the peer's stream is known when its first
    /// bytes arrive), and each later stream waits for a place of its own
    /// before it is taken from the connection (quinn holds the peer to its
    /// stream limits meanwhile: at most 5 MB unread per connection). A
    /// connection that opens no stream within the
    /// [handshake timeout](Self::with_handshake_timeout) gives its place
    /// back and waits on, quiet, for its first stream; past as many quiet
    /// connections as there are places, it is closed (reported).
    pub fn with_pending_incoming(mut self, n: usize) -> Self {
        self.pending_incoming = n;
        self
    }

    /// How many framer handshakes of incoming connections run at once
    /// (default 256); past it the Listener takes no new connection until
    /// one finishes.
    pub fn with_concurrent_handshakes(mut self, n: usize) -> Self {
        self.concurrent_handshakes = n;
        self
    }

    /// How long each step of an incoming connection's establishment may
    /// take (default 10 s): its first bytes when TLS is required, the TLS
    /// handshake, the WebSocket upgrade, the QUIC handshake, the
    /// WebTransport CONNECT, and the framers' handshake; and how long a QUIC
    /// connection or WebTransport session holds its place before its first
    /// stream (see [`with_pending_incoming`](Self::with_pending_incoming)).
    /// Past it only that connection fails (an EstablishmentError naming the
    /// peer). The
    /// Listener's connTimeout, when set, takes its place.
    pub fn with_handshake_timeout(mut self, t: Duration) -> Self {
        self.handshake_timeout = t;
        self
    }

    /// The ages past which a pending connection on a TLS or WebSocket port
    /// gives its place to a new peer while all of
    /// [`pending_incoming`](Self::with_pending_incoming) are taken: `silent`
    /// for a peer that has sent nothing yet (default 200 ms), `handshaking`
    /// for one in its TLS handshake or WebSocket upgrade (default 500 ms).
    /// Shorter frees places sooner against stalling peers; longer spares
    /// real clients that are slow to speak (a client machine short of CPU).
    /// `Duration::MAX`: never (pure backpressure; stalling peers then hold
    /// their places until the handshake timeout).
    ///
    /// Peers give way one at a time, at most one per the shorter age over
    /// `pending_incoming` (0.78 ms by default; a place cannot give way more
    /// often than once per that age anyway), so that places a flood took
    /// together are not all given away together, which would take the CPU
    /// from the established Connections in a burst.
    ///
    /// Measured (`cargo bench --bench scale`, 10,000 TLS clients connecting
    /// 512 at a time on 2 cores): with handshaking at 200 ms real handshakes
    /// were dropped, at 500 ms none on a quiet machine; with the machine
    /// also busy compiling, clients slow to send their ClientHello were
    /// still dropped as silent after 200 ms in one run of three.
    ///
    /// A place holder gives way only when a peer needs its place: one
    /// whose first message is whole, waiting outside the places
    /// ([`with_waiting_peers`](Self::with_waiting_peers)), or past that
    /// bound the lobby's (below); where no peer waits outside (a bound of
    /// 0, a port that takes plain TCP), the next peer.
    ///
    /// Past [`with_waiting_peers`](Self::with_waiting_peers), the same ages
    /// judge the peers waiting in the kernel's backlog while
    /// every place is taken: the Listener still takes them, one at a time,
    /// into a lobby outside the places. One that has been silent (or has
    /// sent part of a first message and no more) for its age, by the
    /// kernel's clock (TCP_INFO, so its time in the backlog counts; Linux
    /// only), or that has been in the lobby that long, is dropped and
    /// reported; the others wait there for the next free place. A peer
    /// whose whole first message waits (a ClientHello, an HTTP request head
    /// on a WebSocket port, other bytes) is never dropped for its quiet, nor
    /// is a silent one on a port that takes plain TCP. Elsewhere than Linux
    /// the lobby peer waits for a place. So under a flood of silent or
    /// stalling peers a new client waits about one age for a place, not for
    /// the whole backlog to give way: against 2,000 peers stalling
    /// mid-ClientHello about 0.5 s (was 2 s), against 2,000 silent ones
    /// 0.2 s (was 0.8 s) (`cargo bench --bench hostile`). A flood of whole
    /// ClientHellos still waits its turn.
    pub fn with_give_way_after(mut self, silent: Duration, handshaking: Duration) -> Self {
        self.give_way_silent = silent;
        self.give_way_handshaking = handshaking;
        self
    }

    /// On a TCP port that serves only TLS and WebSocket (no plain TCP): how
    /// many peers may wait outside the pending places, while every place is
    /// taken, for their whole first message (a ClientHello, an HTTP request
    /// head). Such a peer costs the Listener its socket's descriptor and a
    /// few hundred bytes (and the kernel what the peer sent, up to its
    /// receive buffer), not a place: it is watched for readiness, takes the
    /// next free place once its first message is whole (the oldest place
    /// holder that may give way doing so, see
    /// [`with_give_way_after`](Self::with_give_way_after)), and is dropped
    /// (reported) when it has not sent one within the
    /// [`handshake_timeout`](Self::with_handshake_timeout) and up to half of
    /// it more (spread, so that a flood accepted together is not dropped
    /// and reconnected together). So a flood of silent or stalling peers no
    /// larger than the places and this bound together is held, as a server
    /// without bounds would hold it, and a real client connecting meanwhile
    /// is taken from the backlog at once instead of waiting behind the
    /// flood, which is not made to reconnect over and over. Past this bound
    /// the Listener reads its backlog one peer at a time and drops the peers
    /// that have been quiet too long, as `with_give_way_after` says.
    ///
    /// Default: on Linux, a quarter of what the process's open-file limit
    /// (RLIMIT_NOFILE, read at Listen) leaves once the places hold their
    /// most (three descriptors each), at most 4,096: 64 under a limit of
    /// 1,024, 4,096 from about 17,000; elsewhere 0. 0: no peer waits there.
    pub fn with_waiting_peers(mut self, n: usize) -> Self {
        self.waiting_peers = Some(n);
        self
    }

    /// How many flows (remote addresses) a UDP Listener keeps at once
    /// (default 1,024). A flow ends when its Connection, or the
    /// ConnectionReceived not yet taken, is dropped, or when it has been
    /// idle for [`udp_flow_idle_timeout`](Self::with_udp_flow_idle_timeout);
    /// datagrams from new sources are refused (reported) while the table
    /// is full.
    pub fn with_udp_flows(mut self, n: usize) -> Self {
        self.udp_flows = n;
        self
    }

    /// How many datagrams one UDP flow keeps waiting for its reader
    /// (default 1,024); past it that flow's datagrams are dropped (reported).
    pub fn with_udp_flow_datagrams(mut self, n: usize) -> Self {
        self.udp_flow_datagrams = n;
        self
    }

    /// How many bytes of datagrams all UDP flows together keep waiting for
    /// their readers (default 4 MiB, as one socket's receive buffer); past it
    /// datagrams are dropped (reported). Each datagram counts 64 bytes more
    /// than its payload (its allocation and queue node), so that many small
    /// or empty datagrams are bounded as large ones are.
    pub fn with_udp_buffer_bytes(mut self, n: usize) -> Self {
        self.udp_buffer_bytes = n;
        self
    }

    /// How long a UDP flow may go without a datagram either way before the
    /// Listener forgets it (default 120 s, the least a NAT should keep a
    /// UDP binding, RFC 4787 REQ-5), so that peers which went away, or
    /// sources that sent once, cannot hold the `udp_flows` table full while
    /// the application keeps their Connections. The flow's Connection then
    /// fails (its receive ends with an error naming this bound), and a
    /// later datagram from that address starts a new Connection. Checked
    /// about every second, and when datagrams arrive.
    pub fn with_udp_flow_idle_timeout(mut self, timeout: Duration) -> Self {
        self.udp_flow_idle_timeout = timeout;
        self
    }

    /// On a port shared by QUIC and plain UDP: how many QUIC peer addresses
    /// the demultiplexer remembers (default 65,536, about 4 MiB), each for
    /// 5 min after it was last heard. While it is full, a new QUIC peer is
    /// still recognised by its Initial and by the connection IDs this
    /// Listener issued, only not remembered by address.
    pub fn with_quic_peers(mut self, n: usize) -> Self {
        self.quic_peers = n;
        self
    }

    /// QUIC address validation (RFC 9000 §8.1): once this many handshakes
    /// from addresses not yet validated are in progress (default 64), a new
    /// Initial is answered with a Retry, which only a peer that receives at
    /// its address can answer. Spoofed Initials then cost the Listener no
    /// handshake state; real peers pay one round trip. 0: always Retry.
    /// While every [pending place](Self::with_pending_incoming) is taken,
    /// an unvalidated Initial gets a Retry too, and a validated one waits
    /// for a place; the Initials behind it wait in quinn's queue, at most
    /// four per place (then CONNECTION_REFUSED), with at most 256 KiB of
    /// the packets that follow each and 8 MiB in all.
    pub fn with_quic_retry_above(mut self, n: usize) -> Self {
        self.quic_retry_above = n;
        self
    }

    /// See [`with_pending_incoming`](Self::with_pending_incoming).
    pub fn pending_incoming(&self) -> usize {
        self.pending_incoming
    }

    /// See [`with_concurrent_handshakes`](Self::with_concurrent_handshakes).
    pub fn concurrent_handshakes(&self) -> usize {
        self.concurrent_handshakes
    }

    /// See [`with_handshake_timeout`](Self::with_handshake_timeout).
    pub fn handshake_timeout(&self) -> Duration {
        self.handshake_timeout
    }

    /// The `(silent, handshaking)` ages of
    /// [`with_give_way_after`](Self::with_give_way_after).
    pub fn give_way_after(&self) -> (Duration, Duration) {
        (self.give_way_silent, self.give_way_handshaking)
    }

    /// See [`with_waiting_peers`](Self::with_waiting_peers): the bound
    /// set, or `None` for the default, which a Listener works out from
    /// the process's open-file limit.
    pub fn waiting_peers(&self) -> Option<usize> {
        self.waiting_peers
    }

    /// See [`with_udp_flows`](Self::with_udp_flows).
    pub fn udp_flows(&self) -> usize {
        self.udp_flows
    }

    /// See [`with_udp_flow_datagrams`](Self::with_udp_flow_datagrams).
    pub fn udp_flow_datagrams(&self) -> usize {
        self.udp_flow_datagrams
    }

    /// See [`with_udp_buffer_bytes`](Self::with_udp_buffer_bytes).
    pub fn udp_buffer_bytes(&self) -> usize {
        self.udp_buffer_bytes
    }

    /// See [`with_udp_flow_idle_timeout`](Self::with_udp_flow_idle_timeout).
    pub fn udp_flow_idle_timeout(&self) -> Duration {
        self.udp_flow_idle_timeout
    }

    /// See [`with_quic_peers`](Self::with_quic_peers).
    pub fn quic_peers(&self) -> usize {
        self.quic_peers
    }

    /// See [`with_quic_retry_above`](Self::with_quic_retry_above).
    pub fn quic_retry_above(&self) -> usize {
        self.quic_retry_above
    }

    /// Refuse bounds under which the Listener could accept nothing.
    pub(crate) fn check(&self) -> Result<(), Error> {
        let zero = [
            ("pending_incoming", self.pending_incoming),
            ("concurrent_handshakes", self.concurrent_handshakes),
            ("udp_flows", self.udp_flows),
            ("udp_flow_datagrams", self.udp_flow_datagrams),
            ("udp_buffer_bytes", self.udp_buffer_bytes),
        ];
        if let Some((name, _)) = zero.iter().find(|(_, v)| *v == 0) {
            return Err(Error::invalid_configuration(format!(
                "ListenerLimits::{name} is 0: such a Listener could accept nothing (to refuse every peer, use Listener::set_new_connection_limit(Some(0)))"
            )));
        }
        if self.handshake_timeout.is_zero() {
            return Err(Error::invalid_configuration(
                "ListenerLimits::handshake_timeout is 0: no incoming connection could finish its handshake",
            ));
        }
        if self.udp_flow_idle_timeout.is_zero() {
            return Err(Error::invalid_configuration(
                "ListenerLimits::udp_flow_idle_timeout is 0: every UDP flow would end at once",
            ));
        }
        Ok(())
    }

    /// These bounds, with connTimeout (if set) as the handshake timeout.
    pub(crate) fn with_conn_timeout(mut self, conn_timeout: Option<Duration>) -> Self {
        if let Some(t) = conn_timeout {
            self.handshake_timeout = t;
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bound_of_zero_is_refused_naming_it() {
        assert!(ListenerLimits::default().check().is_ok());
        let e = ListenerLimits::default()
            .with_udp_flows(0)
            .check()
            .unwrap_err();
        assert!(e.message.contains("ListenerLimits::udp_flows is 0"), "{e}");
        let e = ListenerLimits::default()
            .with_handshake_timeout(Duration::ZERO)
            .check()
            .unwrap_err();
        assert!(e.message.contains("handshake_timeout"), "{e}");
        // 0 Retry threshold is meaningful: always validate.
        assert!(ListenerLimits::default()
            .with_quic_retry_above(0)
            .check()
            .is_ok());
    }

    #[test]
    fn conn_timeout_takes_the_handshake_timeouts_place() {
        let l = ListenerLimits::default().with_conn_timeout(Some(Duration::from_millis(300)));
        assert_eq!(l.handshake_timeout(), Duration::from_millis(300));
        let l = ListenerLimits::default().with_conn_timeout(None);
        assert_eq!(l.handshake_timeout(), Duration::from_secs(10));
    }
}
