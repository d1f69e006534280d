//! Capabilities are data: each protocol stack declares which selection
//! properties it provides (RFC 9622 §6.2), and selection reads this table.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A protocol stack postsocket can race.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum StackId {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// TLS over TCP.
    Tls,
    /// QUIC.
    Quic,
    /// WebSocket (`ws://`, plaintext).
    Ws,
    /// WebSocket over TLS (`wss://`).
    Wss,
    /// WebTransport.
    Wt,
    /// WebRTC data channel.
    Webrtc,
}

impl StackId {
    /// Every stack, in no particular order.
    pub const ALL: [StackId; 8] = [
        StackId::Tcp,
        StackId::Udp,
        StackId::Tls,
        StackId::Quic,
        StackId::Ws,
        StackId::Wss,
        StackId::Wt,
        StackId::Webrtc,
    ];

    /// The short name used in traces and on the command line (`tcp`, `udp`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            StackId::Tcp => "tcp",
            StackId::Udp => "udp",
            StackId::Tls => "tls",
            StackId::Quic => "quic",
            StackId::Ws => "ws",
            StackId::Wss => "wss",
            StackId::Wt => "wt",
            StackId::Webrtc => "webrtc",
        }
    }

    /// Parse a short name; the error names the known ones.
    pub fn parse(name: &str) -> Result<StackId, crate::Error> {
        StackId::ALL
            .into_iter()
            .find(|s| s.as_str().eq_ignore_ascii_case(name))
            .ok_or_else(|| {
                crate::Error::invalid_configuration(format!(
                    "unknown protocol stack `{name}`; known: tcp, udp, tls, quic, ws, wss, wt, webrtc"
                ))
            })
    }
}

impl fmt::Display for StackId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether a stack provides a feature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Support {
    /// Always provided; cannot be turned off (Prohibit excludes the stack).
    Always,
    /// Can be turned on or off per Connection.
    Optional,
    /// Never provided (Require excludes the stack).
    Never,
}

impl Support {
    /// Can the stack provide the feature when asked?
    pub fn can_provide(self) -> bool {
        !matches!(self, Support::Never)
    }
    /// Can the stack run without the feature?
    pub fn can_avoid(self) -> bool {
        !matches!(self, Support::Always)
    }
}

/// The security protocol a stack uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SecurityProtocol {
    /// No security at all.
    None,
    /// TLS (1.2 or 1.3), including QUIC's TLS 1.3 and `wss:`.
    Tls,
    /// DTLS (WebRTC).
    Dtls,
}

/// How a stack carries data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DataUnit {
    /// A byte stream: message boundaries need a framer.
    ByteStream,
    /// Datagrams or messages: boundaries are kept.
    Message,
}

/// One row of the capability table: what a protocol stack provides, and
/// how RFC 9622's concepts map onto it. `#[non_exhaustive]`: the table
/// grows (new quirks become fields); start from the rows given here
/// (`Capabilities::TCP`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Capabilities {
    /// The stack this row describes.
    pub stack: StackId,
    /// How data is carried.
    pub data_unit: DataUnit,
    /// reliability (§6.2.1).
    pub reliability: Support,
    /// preserveMsgBoundaries (§6.2.2), without a framer.
    pub preserve_msg_boundaries: Support,
    /// perMsgReliability (§6.2.3).
    pub per_msg_reliability: Support,
    /// preserveOrder (§6.2.4).
    pub preserve_order: Support,
    /// zeroRttMsg (§6.2.5).
    pub zero_rtt_msg: Support,
    /// multistreaming (§6.2.6).
    pub multistreaming: Support,
    /// fullChecksumSend (§6.2.7).
    pub full_checksum_send: Support,
    /// fullChecksumRecv (§6.2.8).
    pub full_checksum_recv: Support,
    /// congestionControl (§6.2.9).
    pub congestion_control: Support,
    /// keepAlive (§6.2.10).
    pub keep_alive: Support,
    /// softErrorNotify (§6.2.17).
    pub soft_error_notify: Support,
    /// activeReadBeforeSend (§6.2.18).
    pub active_read_before_send: Support,
    /// Unidirectional connections (direction ≠ bidirectional, §6.2.16).
    pub unidirectional: Support,
    /// The security protocol.
    pub security: SecurityProtocol,
    /// Largest message the stack can send in one transmission, if bounded.
    pub max_message_len: Option<u64>,
    /// Whether a `final` Message ends this direction of the stack (TCP FIN,
    /// QUIC stream FIN, WebSocket Close) while the peer may still answer.
    /// False where the stack has no half-close (a WebRTC data channel): there
    /// `final` only marks the Message, and the channel closes at Close.
    pub final_ends_sending: bool,
    /// Whether the stack's packets travel over UDP (QUIC, WebTransport,
    /// plain UDP): a network that blackholes UDP blackholes it (the
    /// TransportContext's UDP detector counts its attempts).
    pub over_udp: bool,
    /// Round trips its handshake takes before the attempt succeeds, 0 where
    /// there is none (plain UDP) or it is not raced (WebRTC). The
    /// TransportContext reports a handshake time per round trip as its RTT.
    pub handshake_round_trips: u8,
    /// Whether the stack runs over a TCP connection of its own (TCP, TLS,
    /// WebSocket): the `tcp.*` Connection Properties apply to it.
    pub over_tcp: bool,
    /// Whether its TLS is 1.3 only (QUIC and WebTransport, RFC 9001 §4.2):
    /// allowedSecurityProtocols without TLS 1.3 rules it out.
    pub tls13_only: bool,
    /// Whether it is set up by Rendezvous over a signaling channel rather
    /// than by connecting to a remote endpoint (WebRTC): Rendezvous needs
    /// it, and its Connections clone on their own peer connection.
    pub rendezvous: bool,
    /// Whether this target races or listens on it only when the application
    /// names it (`Preconnection::set_protocols`). Natively WebSocket and
    /// WebTransport: a ws attempt sends an HTTP upgrade to whatever listens
    /// on the port and would race a second TCP connection against TCP and
    /// TLS by default, and WebTransport a second QUIC connection against
    /// QUIC. In the browser they are the default stacks.
    pub opt_in: bool,
    /// Whether an attempt that is merely losing is left to finish rather
    /// than cancelled, because cancelling costs more: in the browser,
    /// WebTransport (Chromium throttles a page for cancelled handshakes).
    pub finish_when_losing: bool,
}

impl Capabilities {
    /// TCP (RFC 9623 §9.1).
    pub const TCP: Capabilities = Capabilities {
        stack: StackId::Tcp,
        data_unit: DataUnit::ByteStream,
        reliability: Support::Always,
        preserve_msg_boundaries: Support::Never,
        per_msg_reliability: Support::Never,
        preserve_order: Support::Always,
        zero_rtt_msg: Support::Never,
        multistreaming: Support::Never,
        full_checksum_send: Support::Always,
        full_checksum_recv: Support::Always,
        congestion_control: Support::Always,
        keep_alive: Support::Optional,
        soft_error_notify: Support::Never,
        active_read_before_send: Support::Optional,
        unidirectional: Support::Optional,
        security: SecurityProtocol::None,
        max_message_len: None,
        final_ends_sending: true,
        over_udp: false,
        handshake_round_trips: 1,
        over_tcp: true,
        tls13_only: false,
        rendezvous: false,
        opt_in: false,
        finish_when_losing: false,
    };

    /// TLS over TCP (rustls): TCP's row with `security: Tls`. TLS 1.3 early
    /// data (0-RTT) is possible with this stack, so `zero_rtt_msg` is
    /// Optional; postsocket sends early data in a later step, and until then
    /// InitiateWithSend sends its Message right after the handshake.
    pub const TLS: Capabilities = Capabilities {
        stack: StackId::Tls,
        zero_rtt_msg: Support::Optional,
        security: SecurityProtocol::Tls,
        handshake_round_trips: 2,
        ..Capabilities::TCP
    };

    /// UDP (RFC 9623 §9.2).
    pub const UDP: Capabilities = Capabilities {
        stack: StackId::Udp,
        data_unit: DataUnit::Message,
        reliability: Support::Never,
        preserve_msg_boundaries: Support::Always,
        per_msg_reliability: Support::Never,
        preserve_order: Support::Never,
        zero_rtt_msg: Support::Always,
        multistreaming: Support::Never,
        full_checksum_send: Support::Always,
        full_checksum_recv: Support::Always,
        congestion_control: Support::Never,
        keep_alive: Support::Never,
        soft_error_notify: Support::Never,
        active_read_before_send: Support::Optional,
        unidirectional: Support::Optional,
        security: SecurityProtocol::None,
        // 65535 minus the IPv6 header-free UDP payload bound (65535 - 8 - 40 on IPv6, 65507 on IPv4).
        max_message_len: Some(65_507),
        final_ends_sending: true,
        over_udp: true,
        handshake_round_trips: 0,
        over_tcp: false,
        tls13_only: false,
        rendezvous: false,
        opt_in: false,
        finish_when_losing: false,
    };

    /// QUIC (RFC 9000; draft-taps-quic-mapping): a Connection is one stream
    /// (a byte stream: Messages need a framer), the QUIC connection is the
    /// group; Messages with msgReliable false go as RFC 9221 datagrams, which
    /// keep boundaries.
    pub const QUIC: Capabilities = Capabilities {
        stack: StackId::Quic,
        data_unit: DataUnit::ByteStream,
        reliability: Support::Always,
        preserve_msg_boundaries: Support::Never,
        per_msg_reliability: Support::Optional,
        preserve_order: Support::Always,
        zero_rtt_msg: Support::Optional,
        multistreaming: Support::Always,
        full_checksum_send: Support::Always,
        full_checksum_recv: Support::Always,
        congestion_control: Support::Always,
        keep_alive: Support::Optional,
        soft_error_notify: Support::Never,
        active_read_before_send: Support::Never,
        unidirectional: Support::Optional,
        security: SecurityProtocol::Tls,
        max_message_len: None,
        final_ends_sending: true,
        over_udp: true,
        handshake_round_trips: 1,
        over_tcp: false,
        tls13_only: true,
        rendezvous: false,
        opt_in: false,
        finish_when_losing: false,
    };

    /// WebSocket (RFC 6455) over plain TCP, `ws://`: Messages keep their
    /// boundaries, reliable and ordered; Clone is a new socket in the group.
    pub const WS: Capabilities = Capabilities {
        stack: StackId::Ws,
        data_unit: DataUnit::Message,
        reliability: Support::Always,
        preserve_msg_boundaries: Support::Always,
        per_msg_reliability: Support::Never,
        preserve_order: Support::Always,
        zero_rtt_msg: Support::Never,
        multistreaming: Support::Never,
        full_checksum_send: Support::Always,
        full_checksum_recv: Support::Always,
        congestion_control: Support::Always,
        keep_alive: Support::Optional,
        soft_error_notify: Support::Never,
        active_read_before_send: Support::Optional,
        unidirectional: Support::Never,
        security: SecurityProtocol::None,
        max_message_len: None,
        final_ends_sending: true,
        over_udp: false,
        handshake_round_trips: 2,
        over_tcp: true,
        tls13_only: false,
        rendezvous: false,
        opt_in: false,
        finish_when_losing: false,
    };

    /// WebSocket over TLS, `wss://`: as [`Capabilities::WS`], with TLS.
    pub const WSS: Capabilities = Capabilities {
        stack: StackId::Wss,
        security: SecurityProtocol::Tls,
        handshake_round_trips: 3,
        ..Capabilities::WS
    };

    /// WebTransport (over HTTP/3): like QUIC, a Connection is one stream (a
    /// byte stream: Messages need a framer) and the session is the group, so
    /// Clone opens a new stream on the same session; Messages with
    /// msgReliable false go as datagrams; order is kept per stream. TLS 1.3
    /// always (pinnedServerCertificate ↔ serverCertificateHashes in the
    /// browser). No 0-RTT: the session needs the HTTP/3 CONNECT first.
    pub const WT: Capabilities = Capabilities {
        stack: StackId::Wt,
        zero_rtt_msg: Support::Never,
        handshake_round_trips: 2,
        ..Capabilities::QUIC
    };

    /// WebRTC data channel (RFC 8831) over DTLS/SCTP: each Message is one
    /// data channel message (boundaries kept). Reliability and order are
    /// per channel (`maxRetransmits` / `maxPacketLifeTime` and `ordered`,
    /// mapped from msgReliable / msgLifetime / msgOrdered / preserveOrder
    /// when the channel is created); Clone is a new channel on the same peer
    /// connection. Established only by Rendezvous over a signaling channel
    /// ([`crate::rendezvous`]), never raced by Initiate.
    pub const WEBRTC: Capabilities = Capabilities {
        stack: StackId::Webrtc,
        data_unit: DataUnit::Message,
        reliability: Support::Optional,
        preserve_msg_boundaries: Support::Always,
        per_msg_reliability: Support::Never,
        preserve_order: Support::Optional,
        zero_rtt_msg: Support::Never,
        multistreaming: Support::Always,
        full_checksum_send: Support::Always,
        full_checksum_recv: Support::Always,
        congestion_control: Support::Always,
        keep_alive: Support::Always,
        soft_error_notify: Support::Never,
        active_read_before_send: Support::Optional,
        unidirectional: Support::Never,
        security: SecurityProtocol::Dtls,
        max_message_len: Some(256 * 1024),
        final_ends_sending: false,
        over_udp: true,
        handshake_round_trips: 0,
        over_tcp: false,
        tls13_only: false,
        rendezvous: true,
        opt_in: false,
        finish_when_losing: false,
    };
}

impl std::str::FromStr for StackId {
    type Err = crate::Error;

    /// The same as [`StackId::parse`], so `"...".parse::<StackId>()` works.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        StackId::parse(s)
    }
}
