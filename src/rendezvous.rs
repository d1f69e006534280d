//! Rendezvous (RFC 9622 §7.3) over a signaling channel the application
//! supplies: the WebRTC data channel stack (`webrtc`).
//!
//! Two peers that cannot simply connect to each other (a browser cannot
//! listen) meet through a signaling channel: one side, the *offerer*, sends
//! an SDP offer; the other, the *answerer*, sends back an SDP answer; then
//! ICE, DTLS and SCTP run between the peers and the first data channel opens.
//! [`Preconnection::rendezvous`] resolves at that point with
//! [`RendezvousDone`]: the Connection over the first data channel, and a
//! [`Listener`] for the further channels the peer opens (its Clones).
//!
//! Signaling is not trickled: each side waits until its candidates are
//! gathered and sends one complete SDP (immediate on loopback).
//!
//! The signaling channel is the [`Signaling`] trait. [`HttpSignaling`] is a
//! ready one for the common case of a server that answers browsers: the
//! offerer POSTs its offer as JSON to a URL and gets the answer in the
//! response; the server side mounts [`Preconnection::answer_offer`] behind
//! that URL.
//!
//! # What the security of a data channel rests on
//! DTLS encrypts the channel and authenticates the peer by the certificate
//! fingerprint in its SDP, and that SDP arrives over the signaling channel.
//! So a data channel is exactly as authentic as its signaling: whoever can
//! change the SDP on the way (an `http://` signaling URL on a network you
//! do not control, say) can put their own fingerprint in it and sit in the
//! middle, and required security does not stop that, since the fingerprint
//! they sent is then the one checked. Use a signaling channel that is itself
//! authenticated: `https://` (from a page, or natively, where the server is
//! verified as [`HttpSignaling::with_security`] says), your own
//! authenticated channel through [`Signaling`], or plain `http://` only on
//! loopback or a network you trust.
//!
//! Data channel options come from the properties (see [`DataChannelOptions`]):
//! one set per channel, chosen when the channel is created; Clone creates a
//! new channel on the same peer connection with the clone's properties.

use crate::backend;
use crate::backend::StackInstance;
use crate::capability::Capabilities;
use crate::connection::{Connection, Parts};
use crate::endpoint::RemoteEndpoint;
use crate::error::{Error, ErrorReason};
use crate::listener::Listener;
use crate::preconnection::Preconnection;
use crate::properties::{Preference, SelectionProperty, TransportProperties};
use crate::runtime::with_timeout;
use crate::runtime::BoxFuture;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::time::Duration;

/// One signaling message: an SDP offer or answer. Its JSON form is the
/// browser's `RTCSessionDescriptionInit`: `{"type":"offer","sdp":"v=0..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum SignalingMessage {
    /// The offerer's session description.
    Offer {
        /// The SDP text.
        sdp: String,
    },
    /// The answerer's session description.
    Answer {
        /// The SDP text.
        sdp: String,
    },
}

impl SignalingMessage {
    /// The SDP text.
    pub fn sdp(&self) -> &str {
        match self {
            SignalingMessage::Offer { sdp } | SignalingMessage::Answer { sdp } => sdp,
        }
    }

    /// The JSON form (`{"type":"offer","sdp":"..."}`).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a SignalingMessage serializes")
    }

    /// Parse the JSON form; the error says what was wrong.
    pub fn from_json(text: &str) -> Result<SignalingMessage, Error> {
        serde_json::from_str(text).map_err(|e| {
            Error::invalid_configuration(format!(
                "not a signaling message (expected {{\"type\":\"offer\"|\"answer\",\"sdp\":\"...\"}}): {e}"
            ))
        })
    }
}

/// Which side of the offer/answer exchange a peer plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SignalingRole {
    /// Sends the offer, receives the answer, and opens the first data channel.
    Offerer,
    /// Receives the offer, sends the answer, and takes the first channel the
    /// offerer opens as its Connection.
    Answerer,
}

/// A signaling channel the application supplies (RFC 9622 §7.3: the
/// candidates and session parameters exchanged out of band).
///
/// The futures are `Send` natively and need not be in the browser (the
/// crate's `BoxFuture` alias). Cancelling a call may lose the message.
pub trait Signaling {
    /// This peer's side of the exchange.
    fn role(&self) -> SignalingRole;
    /// Send one message to the peer.
    fn send(&mut self, message: SignalingMessage) -> SignalingFuture<'_, ()>;
    /// The next message from the peer.
    fn receive(&mut self) -> SignalingFuture<'_, SignalingMessage>;
}

/// The future a [`Signaling`] method returns: `Send` natively, not in the browser.
pub type SignalingFuture<'a, T> = BoxFuture<'a, Result<T, Error>>;

/// The offerer's side of HTTP signaling: [`Signaling::send`] POSTs the offer
/// as JSON to the URL (`Content-Type: application/json`), and the response
/// body is the answer that [`Signaling::receive`] returns. The server side is
/// [`Preconnection::answer_offer`] (see `native-examples/src/bin/webrtc-echo.rs`).
///
/// In the browser it uses `fetch` (a cross-origin URL needs CORS on the
/// server); natively an HTTP/1.1 request over TCP, or over TLS (rustls) for
/// an `https://` URL. The channel's DTLS identity is the one this signaling
/// delivers: see the module's doc before using `http://` beyond loopback.
#[derive(Debug, Clone)]
pub struct HttpSignaling {
    url: String,
    answer: Option<SignalingMessage>,
    security: crate::security::SecurityParameters,
}

impl HttpSignaling {
    /// Signaling that POSTs the offer to `url`, e.g. `http://127.0.0.1:8080/offer`
    /// or `https://signal.example/offer`.
    pub fn new(url: impl Into<String>) -> HttpSignaling {
        HttpSignaling {
            url: url.into(),
            answer: None,
            security: crate::security::SecurityParameters::new(),
        }
    }

    /// How an `https://` signaling server is verified (natively): by
    /// default, required security with the system's roots and the URL's
    /// host name. Pins, `trusted_ca`, `server_name` and the rest apply as
    /// for any TLS connection; disabled security refuses `https://`. In the
    /// browser `fetch` uses the page's trust, so anything but the default
    /// is refused with InvalidConfiguration naming it.
    pub fn with_security(mut self, security: crate::security::SecurityParameters) -> Self {
        self.security = security;
        self
    }

    /// The URL offers are posted to.
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Signaling for HttpSignaling {
    fn role(&self) -> SignalingRole {
        SignalingRole::Offerer
    }

    fn send(&mut self, message: SignalingMessage) -> SignalingFuture<'_, ()> {
        Box::pin(async move {
            if !matches!(message, SignalingMessage::Offer { .. }) {
                return Err(Error::invalid_configuration(
                    "HttpSignaling is the offerer's side: it sends only an offer",
                ));
            }
            let body = backend::http_post_json(&self.url, message.to_json(), &self.security)
                .await
                .map_err(|e| {
                    // A URL or parameters that cannot work are the
                    // application's to fix; the rest is the exchange failing.
                    let reason = if e.kind() == std::io::ErrorKind::InvalidInput {
                        ErrorReason::InvalidConfiguration
                    } else {
                        ErrorReason::EstablishmentFailed
                    };
                    Error::new(reason, format!("signaling POST to {}: {e}", self.url))
                })?;
            let reply = SignalingMessage::from_json(&body).map_err(|e| {
                Error::new(
                    ErrorReason::EstablishmentFailed,
                    format!("the answer from {}: {}", self.url, e.message),
                )
            })?;
            if !matches!(reply, SignalingMessage::Answer { .. }) {
                return Err(Error::new(
                    ErrorReason::EstablishmentFailed,
                    format!("{} replied with an offer, not an answer", self.url),
                ));
            }
            self.answer = Some(reply);
            Ok(())
        })
    }

    fn receive(&mut self) -> SignalingFuture<'_, SignalingMessage> {
        Box::pin(async move {
            self.answer.take().ok_or_else(|| {
                Error::invalid_configuration(
                    "HttpSignaling has no answer: the answer comes back from sending the offer",
                )
            })
        })
    }
}

/// The options of one data channel (RTCDataChannelInit), mapped from the
/// properties when the channel is created:
/// - `ordered`: msgOrdered if set, else preserveOrder (Avoid or Prohibit → unordered).
/// - reliability: msgReliable if set, else reliability (Avoid or Prohibit →
///   unreliable). An unreliable channel with a msgLifetime gets
///   `maxPacketLifeTime` = the lifetime in milliseconds; without one,
///   `maxRetransmits` = 0. A reliable channel sets neither.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataChannelOptions {
    /// The channel's label.
    pub label: String,
    /// `ordered`.
    pub ordered: bool,
    /// `maxRetransmits`.
    pub max_retransmits: Option<u16>,
    /// `maxPacketLifeTime`, in milliseconds.
    pub max_packet_life_time: Option<u16>,
}

impl DataChannelOptions {
    /// The options for a channel with these properties; an error when a
    /// value cannot be expressed (a lifetime over 65535 ms on an unreliable channel).
    pub fn from_properties(props: &TransportProperties) -> Result<DataChannelOptions, Error> {
        let wants = |p: SelectionProperty| {
            !matches!(props.get(p), Preference::Avoid | Preference::Prohibit)
        };
        let m = &props.message_defaults;
        let ordered = m
            .msg_ordered
            .unwrap_or_else(|| wants(SelectionProperty::PreserveOrder));
        let reliable = m
            .msg_reliable
            .unwrap_or_else(|| wants(SelectionProperty::Reliability));
        let (max_retransmits, max_packet_life_time) = match (reliable, m.msg_lifetime) {
            (true, _) => (None, None),
            (false, None) => (Some(0), None),
            (false, Some(l)) => {
                let ms = l.as_millis();
                if ms > u16::MAX as u128 {
                    return Err(Error::invalid_configuration(format!(
                        "msgLifetime {} on an unreliable WebRTC data channel: \
                         maxPacketLifeTime is at most 65535 ms",
                        crate::runtime::ms_text(l)
                    )));
                }
                (None, Some(ms.max(1) as u16))
            }
        };
        Ok(DataChannelOptions {
            label: "postsocket".to_string(),
            ordered,
            max_retransmits,
            max_packet_life_time,
        })
    }

    /// Whether every message is delivered (no retransmit or lifetime limit).
    pub fn reliable(&self) -> bool {
        self.max_retransmits.is_none() && self.max_packet_life_time.is_none()
    }
}

/// `RendezvousDone<Connection>` (RFC 9622 §7.3): the peer connection is up.
pub struct RendezvousDone {
    /// The Connection over the first data channel.
    pub connection: Connection,
    /// `ConnectionReceived` for each further data channel the peer opens
    /// (the peer's Clones). Dropping it refuses them (they are closed).
    pub listener: Listener,
}

impl std::fmt::Debug for RendezvousDone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RendezvousDone")
            .field("connection", &self.connection)
            .finish()
    }
}

/// The rest of an answer: drive it to get [`RendezvousDone`] once the
/// offerer's first data channel opens. Dropping it closes the peer connection.
pub struct PendingRendezvous {
    peer: backend::WebrtcPeer,
    pre: Preconnection,
    timeout: Duration,
}

impl std::fmt::Debug for PendingRendezvous {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingRendezvous").finish()
    }
}

impl PendingRendezvous {
    /// Wait for the offerer's first data channel (at most the timeout).
    pub async fn done(self) -> Result<RendezvousDone, Error> {
        finish(self.peer, &self.pre, self.timeout).await
    }
}

/// How long a rendezvous waits for its first data channel when no
/// connTimeout is set.
pub const DEFAULT_RENDEZVOUS_TIMEOUT: Duration = Duration::from_secs(30);

fn check(pre: &Preconnection) -> Result<(TransportProperties, Duration), Error> {
    let props = pre.transport_properties().clone();
    if !crate::backend::RENDEZVOUS {
        return Err(Error::new(
            ErrorReason::NoCandidates,
            "Rendezvous runs the webrtc stack, which is not in this build (postsocket's cargo feature `webrtc`)",
        ));
    }
    let stacks = pre.protocols_set();
    if let Some(s) = stacks {
        if !s.contains(&Capabilities::WEBRTC.stack) {
            return Err(Error::new(
                ErrorReason::NoCandidates,
                "Rendezvous with signaling runs the webrtc stack, which set_protocols excludes",
            ));
        }
    }
    crate::backend::check_security(pre.security_parameters())?;
    let ignored = pre.security_parameters().not_for_webrtc();
    if !ignored.is_empty() {
        return Err(Error::invalid_configuration(format!(
            "Rendezvous runs WebRTC, whose DTLS peer is authenticated by the certificate \
             fingerprint in the signaled SDP, with certificates the peers make themselves: {} \
             cannot be applied to it and would be ignored (protect the fingerprint with a \
             secure signaling channel, such as HttpSignaling over https)",
            ignored.join(", ")
        )));
    }
    // The properties must be satisfiable by a WebRTC data channel.
    crate::racing::selection::select(
        &[Capabilities::WEBRTC],
        &props,
        pre.security_parameters(),
        pre.has_framers(),
        None,
    )?;
    let timeout = props
        .connection
        .conn_timeout
        .unwrap_or(DEFAULT_RENDEZVOUS_TIMEOUT);
    Ok((props, timeout))
}

/// Socket options of a peer: the first LocalEndpoint with an IP address
/// (and port) is where the native peer binds its UDP socket.
fn peer_options(pre: &Preconnection, props: &TransportProperties) -> backend::SocketOptions {
    let local = pre
        .locals()
        .iter()
        .find_map(|l| Some(SocketAddr::new(l.ip_address()?, l.port().unwrap_or(0))));
    crate::attempt::socket_options(props, &props.connection, local, None)
}

fn fail(e: std::io::Error, what: &str) -> Error {
    Error::new(ErrorReason::EstablishmentFailed, format!("{what}: {e}"))
}

fn parts(
    transport: backend::Transport,
    props: TransportProperties,
    framers: crate::framer::FramerStack,
    remote: Option<SocketAddr>,
) -> Result<Parts, Error> {
    let remote_ep = match remote {
        Some(a) => RemoteEndpoint::new().with_socket_addr(a)?,
        None => RemoteEndpoint::new(),
    };
    Ok(Parts {
        transport,
        caps: Capabilities::WEBRTC,
        framers,
        leftover: Vec::new(),
        props: std::sync::Arc::new(props),
        trace: Default::default(),
        remote: remote_ep,
        remote_addr: remote,
        local: None,
        reconnect: None,
        early_sent: false,
        peer_early_data: false,
    })
}

async fn finish(
    peer: backend::WebrtcPeer,
    pre: &Preconnection,
    timeout: Duration,
) -> Result<RendezvousDone, Error> {
    let props = pre.transport_properties().clone();
    let first = with_timeout(
        timeout,
        "waiting for the first WebRTC data channel",
        async {
            peer.first_channel()
                .await
                .map_err(|e| fail(e, "WebRTC peer connection"))
        },
    )
    .await?;
    let remote = first.remote_addr();
    let mut framers = pre.framers_fresh();
    let leftover = crate::attempt::framer_start(&first, &Capabilities::WEBRTC, &mut framers)
        .await
        .map_err(|m| Error::new(ErrorReason::ProtocolFailed, m))?;
    let mut p = parts(first, props, framers, remote)?;
    p.leftover = leftover;
    let connection = Connection::from_parts(p, None);
    let listener = Listener::for_incoming(peer.into_incoming(), pre.snapshot(), connection.group());
    Ok(RendezvousDone {
        connection,
        listener,
    })
}

impl Preconnection {
    /// `Rendezvous()` (RFC 9622 §7.3) over a signaling channel: run the
    /// offer/answer exchange for `signaling`'s role, then ICE, DTLS and SCTP,
    /// and resolve with [`RendezvousDone`] when the first data channel is
    /// open, or with an EstablishmentError (InvalidConfiguration /
    /// PolicyProhibited before any network activity; EstablishmentFailed
    /// with the signaling or peer failure; Timeout after connTimeout, 30 s by
    /// default). Resolving this future is the `RendezvousDone` event.
    ///
    /// Dropping the future abandons the rendezvous and closes the peer connection.
    pub fn rendezvous(
        &self,
        mut signaling: impl Signaling + 'static,
    ) -> impl std::future::Future<Output = Result<RendezvousDone, Error>> + 'static {
        let pre = self.clone();
        async move {
            let (props, timeout) = check(&pre)?;
            let opts = peer_options(&pre, &props);
            match signaling.role() {
                SignalingRole::Offerer => {
                    let channel = DataChannelOptions::from_properties(&props)?;
                    let offer = with_timeout(timeout, "creating the WebRTC offer", async {
                        backend::WebrtcOffer::create(&opts, &channel)
                            .await
                            .map_err(|e| fail(e, "creating the WebRTC offer"))
                    })
                    .await?;
                    let sdp = offer.sdp();
                    let answer = with_timeout(timeout, "signaling", async {
                        signaling.send(SignalingMessage::Offer { sdp }).await?;
                        match signaling.receive().await? {
                            SignalingMessage::Answer { sdp } => Ok(sdp),
                            SignalingMessage::Offer { .. } => Err(Error::new(
                                ErrorReason::EstablishmentFailed,
                                "the signaling peer sent an offer where an answer was expected \
                                 (both sides are offerers)",
                            )),
                        }
                    })
                    .await?;
                    let peer = offer
                        .accept_answer(&answer)
                        .await
                        .map_err(|e| fail(e, "the peer's WebRTC answer"))?;
                    finish(peer, &pre, timeout).await
                }
                SignalingRole::Answerer => {
                    let offer = with_timeout(timeout, "signaling", signaling.receive()).await?;
                    let SignalingMessage::Offer { sdp } = offer else {
                        return Err(Error::new(
                            ErrorReason::EstablishmentFailed,
                            "the signaling peer sent an answer where an offer was expected \
                             (both sides are answerers)",
                        ));
                    };
                    let (answer, pending) = pre.answer_offer(&sdp).await?;
                    with_timeout(
                        timeout,
                        "signaling",
                        signaling.send(SignalingMessage::Answer { sdp: answer }),
                    )
                    .await?;
                    pending.done().await
                }
            }
        }
    }

    /// The answerer's side of a rendezvous as one call, for a signaling
    /// server: take the offerer's SDP offer, return the SDP answer to send
    /// back, and a [`PendingRendezvous`] that yields [`RendezvousDone`] once
    /// the offerer's first data channel opens. A malformed offer fails with
    /// EstablishmentFailed saying why.
    pub async fn answer_offer(
        &self,
        offer_sdp: &str,
    ) -> Result<(String, PendingRendezvous), Error> {
        let (props, timeout) = check(self)?;
        let opts = peer_options(self, &props);
        let (peer, answer) = with_timeout(timeout, "answering the WebRTC offer", async {
            backend::WebrtcPeer::answer(offer_sdp, &opts)
                .await
                .map_err(|e| fail(e, "answering the WebRTC offer"))
        })
        .await?;
        Ok((
            answer,
            PendingRendezvous {
                peer,
                pre: self.clone(),
                timeout,
            },
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signaling_json_is_the_browsers_session_description() {
        let m = SignalingMessage::Offer {
            sdp: "v=0\r\n".into(),
        };
        assert_eq!(m.to_json(), r#"{"type":"offer","sdp":"v=0\r\n"}"#);
        let a = SignalingMessage::from_json(r#"{"type":"answer","sdp":"x"}"#).unwrap();
        assert_eq!(a, SignalingMessage::Answer { sdp: "x".into() });
        assert_eq!(a.sdp(), "x");
        let e = SignalingMessage::from_json(r#"{"type":"pranswer","sdp":"x"}"#).unwrap_err();
        assert!(e.message.contains("not a signaling message"), "{e}");
        assert!(SignalingMessage::from_json("{}").is_err());
    }

    #[test]
    fn channel_options_follow_the_properties() {
        let mut p = TransportProperties::new();
        let o = DataChannelOptions::from_properties(&p).unwrap();
        assert!(o.ordered && o.reliable());
        assert_eq!((o.max_retransmits, o.max_packet_life_time), (None, None));

        p.message_defaults.msg_reliable = Some(false);
        let o = DataChannelOptions::from_properties(&p).unwrap();
        assert_eq!((o.max_retransmits, o.max_packet_life_time), (Some(0), None));
        assert!(o.ordered);

        p.message_defaults.msg_lifetime = Some(Duration::from_millis(1500));
        let o = DataChannelOptions::from_properties(&p).unwrap();
        assert_eq!(
            (o.max_retransmits, o.max_packet_life_time),
            (None, Some(1500))
        );

        p.message_defaults.msg_lifetime = Some(Duration::from_secs(100));
        let e = DataChannelOptions::from_properties(&p).unwrap_err();
        assert!(e.message.contains("65535"), "{e}");

        // A lifetime on a reliable channel is postsocket's own (Expired before sending).
        p.message_defaults.msg_reliable = Some(true);
        assert!(DataChannelOptions::from_properties(&p).unwrap().reliable());

        let mut p = TransportProperties::new();
        p.set_preference(SelectionProperty::PreserveOrder, Preference::Prohibit);
        p.set_preference(SelectionProperty::Reliability, Preference::Avoid);
        let o = DataChannelOptions::from_properties(&p).unwrap();
        assert!(!o.ordered && !o.reliable());
        p.message_defaults.msg_ordered = Some(true);
        assert!(DataChannelOptions::from_properties(&p).unwrap().ordered);
    }
}
