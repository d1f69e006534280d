//! WebRTC data channels in the browser (`RTCPeerConnection`,
//! `RTCDataChannel`): the `webrtc` stack. Each data channel message is one
//! TAPS Message (binary, as ArrayBuffer).
//!
//! - **Establishment**: Rendezvous only (see `crate::rendezvous`). The
//!   offerer creates its first channel with the options mapped from the
//!   properties, then the offer; either side waits for ICE gathering to
//!   complete (no trickle) before its SDP goes to the signaling channel.
//!   A Connection is Ready when its channel's `open` fires.
//! - **Receive**: the browser delivers every message as an event, so the
//!   handlers feed a channel that `read` drains (as for WebSocket).
//! - **Send**: `send()` copies into the browser's buffer. Backpressure: wait
//!   while `bufferedAmount` is above [`HIGH_WATER`], woken by
//!   `bufferedamountlow` (threshold [`LOW_WATER`]) with a bounded poll as a
//!   fallback.
//! - **Clone**: a new channel on the same RTCPeerConnection, with the options
//!   of the clone's properties.
//! - **Drop**: dropping a channel's last handle closes the channel; the peer
//!   connection closes when its last channel (and the pending peer) is gone.
//! - **Threads**: the browser objects stay in tables of the page's thread;
//!   the handles are `Send + Sync` and used from another thread report an error.

use super::{Incoming, Transport};
use crate::backend::{Recv, SocketOptions};
use crate::capability::Capabilities;
use crate::properties::{PropertyValue, TransportProperties};
use crate::rendezvous::DataChannelOptions;
use futures::channel::mpsc;
use futures::StreamExt;
use std::cell::RefCell;
use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{
    Event, MessageEvent, RtcConfiguration, RtcDataChannel, RtcDataChannelEvent, RtcDataChannelInit,
    RtcDataChannelState, RtcDataChannelType, RtcIceGatheringState, RtcPeerConnection, RtcSdpType,
    RtcSessionDescriptionInit,
};

/// `send` waits while the browser holds more than this many unsent bytes.
pub(crate) const HIGH_WATER: u32 = 1 << 20;
/// `bufferedamountlow` fires when the buffer drains below this.
pub(crate) const LOW_WATER: u32 = 256 * 1024;
/// Longest pause between two `bufferedAmount` polls while waiting to send.
const MAX_POLL: Duration = Duration::from_millis(50);
/// Without any ICE candidate gathered by then, the offer or answer fails.
const GATHER_TIMEOUT: Duration = Duration::from_secs(10);

/// How long to wait for ICE gathering to complete once some candidates are
/// there: Chromium completes at once on loopback, but Firefox may never
/// report complete (in a loopback-only network it keeps trying for a STUN
/// server), and the candidates it has are the ones the peer needs.
const GATHER_GRACE: Duration = Duration::from_secs(1);

fn js_text(v: &JsValue) -> String {
    if let Some(e) = v.dyn_ref::<js_sys::Error>() {
        return String::from(e.to_string());
    }
    v.as_string().unwrap_or_else(|| format!("{v:?}"))
}

fn js_err(what: &str) -> impl Fn(JsValue) -> io::Error + '_ {
    move |e| io::Error::other(format!("{what}: {}", js_text(&e)))
}

enum ChanEvent {
    Open,
    Message(bytes::Bytes),
    Error(String),
    Close,
    Aborted,
    /// The peer sent more than [`super::UNREAD_MAX`] bytes that no read
    /// took (this many): the Connection fails, the channel is closed.
    Overflow(usize),
}

struct ChanBrowser {
    dc: RtcDataChannel,
    /// Its RTCPeerConnection's id (in `PEERS`).
    peer: u64,
    _onopen: Closure<dyn FnMut(Event)>,
    _onmessage: Closure<dyn FnMut(MessageEvent)>,
    _onerror: Closure<dyn FnMut(Event)>,
    _onclose: Closure<dyn FnMut(Event)>,
    _onlow: Closure<dyn FnMut(Event)>,
}

impl Drop for ChanBrowser {
    fn drop(&mut self) {
        self.dc.set_onopen(None);
        self.dc.set_onmessage(None);
        self.dc.set_onerror(None);
        self.dc.set_onclose(None);
        self.dc.set_onbufferedamountlow(None);
        self.dc.close();
    }
}

struct PeerBrowser {
    pc: RtcPeerConnection,
    _ondatachannel: Closure<dyn FnMut(RtcDataChannelEvent)>,
}

impl Drop for PeerBrowser {
    fn drop(&mut self) {
        self.pc.set_ondatachannel(None);
        self.pc.close();
    }
}

thread_local! {
    static PEERS: RefCell<super::IdMap<u64, PeerBrowser>> = RefCell::default();
    static CHANNELS: RefCell<super::IdMap<u64, ChanBrowser>> = RefCell::default();
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

fn wrong_thread() -> io::Error {
    io::Error::other(
        "the WebRTC peer connection belongs to another thread (browser objects stay on their thread)",
    )
}

/// The handle of one RTCPeerConnection.
struct PeerInner {
    id: u64,
}

impl Drop for PeerInner {
    fn drop(&mut self) {
        let p = PEERS.with(|p| p.borrow_mut().remove(&self.id));
        drop(p);
    }
}

impl PeerInner {
    fn with_pc<R>(&self, f: impl FnOnce(&RtcPeerConnection) -> R) -> io::Result<R> {
        PEERS
            .with(|p| p.borrow().get(&self.id).map(|b| f(&b.pc)))
            .ok_or_else(wrong_thread)
    }

    /// Bytes sent plus received over every candidate pair of the peer
    /// connection (`getStats()`; ICE's own checks are not counted), to
    /// tell whether SCTP is still moving data or acknowledgements. None
    /// when the browser does not say.
    async fn bytes_moved(&self) -> Option<f64> {
        let stats = self.with_pc(|pc| pc.get_stats()).ok()?;
        let report = wasm_bindgen_futures::JsFuture::from(stats).await.ok()?;
        let values = js_sys::Reflect::get(&report, &"values".into()).ok()?;
        let values: js_sys::Function = values.dyn_into().ok()?;
        let iter = values.call0(&report).ok()?;
        let mut total = None;
        for stat in js_sys::try_iter(&iter).ok()??.flatten() {
            let field = |name: &str| js_sys::Reflect::get(&stat, &name.into()).ok();
            if field("type").and_then(|t| t.as_string()).as_deref() != Some("candidate-pair") {
                continue;
            }
            let n = |name| field(name).and_then(|v| v.as_f64()).unwrap_or(0.0);
            *total.get_or_insert(0.0) += n("bytesSent") + n("bytesReceived");
        }
        total
    }
}

struct ChanInner {
    id: u64,
    peer: Arc<PeerInner>,
    tx: mpsc::UnboundedSender<ChanEvent>,
    rx: futures::lock::Mutex<mpsc::UnboundedReceiver<ChanEvent>>,
    low: futures::lock::Mutex<mpsc::UnboundedReceiver<()>>,
    ended: crate::backend::Ended,
    /// Bytes of the Messages in `rx` (see [`super::UNREAD_MAX`]).
    unread: Arc<super::Unread>,
}

impl Drop for ChanInner {
    fn drop(&mut self) {
        let c = CHANNELS.with(|c| c.borrow_mut().remove(&self.id));
        drop(c);
    }
}

/// One browser data channel. Clones share it.
#[derive(Clone)]
pub(crate) struct WebrtcTransport {
    inner: Arc<ChanInner>,
}

impl fmt::Debug for WebrtcTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebrtcTransport")
            .field("id", &self.inner.id)
            .finish()
    }
}

fn channel_init(o: &DataChannelOptions) -> RtcDataChannelInit {
    let init = RtcDataChannelInit::new();
    init.set_ordered(o.ordered);
    if let Some(r) = o.max_retransmits {
        init.set_max_retransmits(r);
    }
    if let Some(l) = o.max_packet_life_time {
        init.set_max_packet_life_time(l);
    }
    init
}

impl WebrtcTransport {
    /// Take over a browser data channel: attach the handlers and register it.
    fn adopt(dc: RtcDataChannel, peer: Arc<PeerInner>) -> WebrtcTransport {
        dc.set_binary_type(RtcDataChannelType::Arraybuffer);
        dc.set_buffered_amount_low_threshold(LOW_WATER);
        let (tx, rx) = mpsc::unbounded();
        let (low_tx, low_rx) = mpsc::unbounded();
        let unread = Arc::new(super::Unread::default());
        let t = tx.clone();
        let onopen = Closure::<dyn FnMut(Event)>::new(move |_: Event| {
            let _ = t.unbounded_send(ChanEvent::Open);
        });
        let t = tx.clone();
        let u = unread.clone();
        let onmessage = Closure::<dyn FnMut(MessageEvent)>::new(move |e: MessageEvent| {
            if u.overflowed() {
                return; // failed already (see UNREAD_MAX)
            }
            let data = e.data();
            let bytes = if let Some(buf) = data.dyn_ref::<js_sys::ArrayBuffer>() {
                super::received_bytes::received(js_sys::Uint8Array::new(buf))
            } else if let Some(s) = data.as_string() {
                s.into_bytes().into()
            } else {
                let _ = t.unbounded_send(ChanEvent::Error(
                    "a data channel message that is neither binary nor text".into(),
                ));
                return;
            };
            let _ = t.unbounded_send(match u.admit(bytes.len()) {
                super::Admit::Yes => ChanEvent::Message(bytes),
                super::Admit::Overflow(queued) => ChanEvent::Overflow(queued),
                super::Admit::Dropped => return,
            });
        });
        let t = tx.clone();
        let onerror = Closure::<dyn FnMut(Event)>::new(move |e: Event| {
            let msg = js_sys::Reflect::get(&e, &"error".into())
                .ok()
                .filter(|v| !v.is_undefined())
                .map(|v| js_text(&v))
                .unwrap_or_else(|| "data channel error".into());
            let _ = t.unbounded_send(ChanEvent::Error(msg));
        });
        let t = tx.clone();
        let onclose = Closure::<dyn FnMut(Event)>::new(move |_: Event| {
            let _ = t.unbounded_send(ChanEvent::Close);
        });
        let onlow = Closure::<dyn FnMut(Event)>::new(move |_: Event| {
            let _ = low_tx.unbounded_send(());
        });
        dc.set_onopen(Some(onopen.as_ref().unchecked_ref()));
        dc.set_onmessage(Some(onmessage.as_ref().unchecked_ref()));
        dc.set_onerror(Some(onerror.as_ref().unchecked_ref()));
        dc.set_onclose(Some(onclose.as_ref().unchecked_ref()));
        dc.set_onbufferedamountlow(Some(onlow.as_ref().unchecked_ref()));
        if dc.ready_state() == RtcDataChannelState::Open {
            let _ = tx.unbounded_send(ChanEvent::Open);
        }
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        CHANNELS.with(|c| {
            c.borrow_mut().insert(
                id,
                ChanBrowser {
                    dc,
                    peer: peer.id,
                    _onopen: onopen,
                    _onmessage: onmessage,
                    _onerror: onerror,
                    _onclose: onclose,
                    _onlow: onlow,
                },
            )
        });
        WebrtcTransport {
            inner: Arc::new(ChanInner {
                id,
                peer,
                tx,
                rx: futures::lock::Mutex::new(rx),
                low: futures::lock::Mutex::new(low_rx),
                ended: Default::default(),
                unread,
            }),
        }
    }

    fn with_dc<R>(&self, f: impl FnOnce(&RtcDataChannel) -> R) -> io::Result<R> {
        CHANNELS
            .with(|c| c.borrow().get(&self.inner.id).map(|b| f(&b.dc)))
            .ok_or_else(wrong_thread)
    }

    fn ended(&self) -> Option<io::Error> {
        self.inner.ended.get()
    }

    fn end(&self, kind: io::ErrorKind, msg: String) -> io::Error {
        self.inner.ended.set(kind, msg)
    }

    /// Wait until the channel is open (Ready); an error if it closes first.
    async fn wait_open(&self) -> io::Result<()> {
        let mut rx = self.inner.rx.lock().await;
        if self.with_dc(|dc| dc.ready_state())? == RtcDataChannelState::Open {
            return Ok(());
        }
        let mut error = None;
        loop {
            match rx.next().await {
                Some(ChanEvent::Open) => return Ok(()),
                // (No Message comes before Open.)
                Some(ChanEvent::Message(_)) | Some(ChanEvent::Overflow(_)) => {}
                Some(ChanEvent::Error(e)) => error = Some(e),
                Some(ChanEvent::Close) => {
                    return Err(self.end(
                        io::ErrorKind::ConnectionRefused,
                        format!(
                            "the WebRTC data channel closed before it opened{}",
                            error.map(|e| format!(": {e}")).unwrap_or_default()
                        ),
                    ))
                }
                Some(ChanEvent::Aborted) | None => {
                    return Err(self.end(
                        io::ErrorKind::ConnectionAborted,
                        "opening the WebRTC data channel was aborted".into(),
                    ))
                }
            }
        }
    }

    /// The next message; an error once the channel closed.
    pub(crate) async fn read(&self) -> io::Result<Recv> {
        if let Some(e) = self.ended() {
            return Err(e);
        }
        let mut rx = self.inner.rx.lock().await;
        let mut error = None;
        loop {
            if let Some(e) = self.ended() {
                return Err(e);
            }
            match rx.next().await {
                Some(ChanEvent::Message(d)) => {
                    self.inner.unread.taken(d.len());
                    return Ok(Recv::Datagram(d));
                }
                Some(ChanEvent::Overflow(queued)) => {
                    let _ = self.with_dc(|dc| dc.close());
                    return Err(self.end(
                        io::ErrorKind::OutOfMemory,
                        super::unread_overflow("the WebRTC data channel", queued, "it was closed"),
                    ));
                }
                Some(ChanEvent::Open) => {}
                Some(ChanEvent::Error(e)) => error = Some(e),
                Some(ChanEvent::Close) => {
                    let (kind, msg) = match error.take() {
                        None => (
                            io::ErrorKind::UnexpectedEof,
                            "the WebRTC data channel closed".to_string(),
                        ),
                        Some(e) => (
                            io::ErrorKind::ConnectionReset,
                            format!("the WebRTC data channel failed: {e}"),
                        ),
                    };
                    return Err(self.end(kind, msg));
                }
                Some(ChanEvent::Aborted) | None => {
                    return Err(self.end(
                        io::ErrorKind::ConnectionAborted,
                        "the WebRTC data channel was aborted".into(),
                    ))
                }
            }
        }
    }

    /// Send one message now if the channel is open with room in its
    /// buffer; `None` when it must wait (still connecting, or above
    /// [`HIGH_WATER`]).
    pub(crate) fn try_send(&self, data: &[u8]) -> Option<io::Result<()>> {
        if let Some(e) = self.ended() {
            return Some(Err(e));
        }
        let sent = self.with_dc(|dc| match dc.ready_state() {
            RtcDataChannelState::Open if dc.buffered_amount() <= HIGH_WATER => Some(
                dc.send_with_u8_array(data)
                    .map_err(js_err("sending on the WebRTC data channel")),
            ),
            RtcDataChannelState::Open | RtcDataChannelState::Connecting => None,
            _ => Some(Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "the WebRTC data channel is closing or closed",
            ))),
        });
        match sent {
            Ok(r) => r,
            Err(e) => Some(Err(e)),
        }
    }

    /// Send one message, after waiting while the channel is still
    /// connecting or its buffer is above [`HIGH_WATER`].
    pub(crate) async fn send(&self, data: &[u8]) -> io::Result<()> {
        let mut pause = Duration::from_millis(1);
        loop {
            if let Some(r) = self.try_send(data) {
                return r;
            }
            // Woken by bufferedamountlow, or after a bounded pause.
            let mut low = self.inner.low.lock().await;
            let wake = low.next();
            let sleep = crate::runtime::sleep(pause);
            futures::pin_mut!(sleep);
            let _ = futures::future::select(wake, sleep).await;
            pause = (pause * 2).min(MAX_POLL);
        }
    }

    /// Close the channel; the peer's reads end.
    pub(crate) fn shutdown_write(&self) -> io::Result<()> {
        self.with_dc(|dc| dc.close())
    }

    /// After `shutdown_write`: resolves once the browser closed the
    /// channel. The SCTP stream reset that closes it goes out after the
    /// data sent before the close (RFC 8831 §6.7), so then the
    /// RTCPeerConnection may close without losing what `bufferedAmount`
    /// still held. Polled, like the send's wait (there is no event for it
    /// once `onclose` is taken by the reader).
    ///
    /// A peer that never answers the close gets [`CLOSE_LINGER`] once the
    /// browser handed SCTP everything (`bufferedAmount` 0) *and* SCTP
    /// stopped moving bytes. `bufferedAmount` 0 means only that SCTP took
    /// the data, not that the peer has it: SCTP's own send buffer may still
    /// hold hundreds of KB, waiting for a retransmission after a loss. So
    /// the linger starts over as long as the peer connection's candidate
    /// pairs sent or received anything during it (data, or the peer's
    /// acknowledgements); [`CLOSE_TIMEOUT`] bounds the whole close above
    /// this.
    ///
    /// [`CLOSE_LINGER`]: crate::CLOSE_LINGER
    /// [`CLOSE_TIMEOUT`]: crate::CLOSE_TIMEOUT
    pub(crate) async fn closed(&self) -> io::Result<()> {
        let mut pause = Duration::from_millis(1);
        // Since when `bufferedAmount` is 0, and the bytes moved by then.
        let mut emptied: Option<(crate::runtime::Instant, Option<f64>)> = None;
        loop {
            let now = crate::runtime::now();
            match self.with_dc(|dc| (dc.ready_state(), dc.buffered_amount())) {
                Ok((RtcDataChannelState::Closed, _)) | Err(_) => return Ok(()),
                Ok((_, 0)) => match emptied {
                    None => emptied = Some((now, self.inner.peer.bytes_moved().await)),
                    Some((since, moved)) if now.duration_since(since) >= crate::CLOSE_LINGER => {
                        let bytes = self.inner.peer.bytes_moved().await;
                        if bytes.is_none() || bytes == moved {
                            return Ok(());
                        }
                        // Still moving: linger again from now.
                        emptied = Some((now, bytes));
                    }
                    Some(_) => {}
                },
                Ok(_) => emptied = None,
            }
            crate::runtime::sleep(pause).await;
            pause = (pause * 2).min(MAX_POLL);
        }
    }

    /// Close the channel and end every pending and later read at once.
    ///
    /// A page cannot reset one data channel, and closing it reads as a
    /// clean end to the peer. So when every other channel of its
    /// RTCPeerConnection is closed, the peer connection is closed instead:
    /// in Chromium that aborts the SCTP association, which the peer reads
    /// as a failure. (Firefox resets each channel before it ends the
    /// association: its peer reads the channel's clean close. A channel
    /// beside others, open or still draining what they buffered, is closed
    /// alone: their Connections must go on.)
    pub(crate) fn abort(&self) {
        let peer = self.inner.peer.id;
        let alone = CHANNELS.with(|c| {
            c.borrow()
                .iter()
                .filter(|(id, ch)| **id != self.inner.id && ch.peer == peer)
                // A sibling still closing drains what it buffered: closing
                // the peer connection would discard it.
                .all(|(_, ch)| ch.dc.ready_state() == RtcDataChannelState::Closed)
        });
        if alone {
            let _ = self.inner.peer.with_pc(|pc| pc.close());
        }
        let _ = self.with_dc(|dc| dc.close());
        self.end(
            io::ErrorKind::ConnectionAborted,
            "the WebRTC data channel was aborted".into(),
        );
        let _ = self.inner.tx.unbounded_send(ChanEvent::Aborted);
    }

    /// Clone: a new channel on the same RTCPeerConnection.
    pub(crate) async fn open_sibling(&self, props: &TransportProperties) -> io::Result<Transport> {
        let options = DataChannelOptions::from_properties(props)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.message))?;
        let dc = self.inner.peer.with_pc(|pc| {
            pc.create_data_channel_with_data_channel_dict(&options.label, &channel_init(&options))
        })?;
        let t = WebrtcTransport::adopt(dc, self.inner.peer.clone());
        t.wait_open().await?;
        Ok(Transport::Webrtc(t))
    }

    /// CloseGroup / AbortGroup: close the peer connection.
    pub(crate) fn close_peer(&self) {
        let _ = self.inner.peer.with_pc(|pc| pc.close());
    }

    /// (reliable, ordered) of the browser's channel.
    pub(crate) fn delivery(&self) -> Option<(bool, bool)> {
        self.with_dc(|dc| {
            let reliable = dc.max_retransmits().is_none() && dc.max_packet_life_time().is_none();
            let ordered = js_sys::Reflect::get(dc, &"ordered".into())
                .ok()
                .and_then(|v| v.as_bool())
                .unwrap_or(true);
            (reliable, ordered)
        })
        .ok()
    }

    /// `webrtc.*` protocol-specific properties, read from the browser's
    /// RTCDataChannel.
    pub(crate) fn protocol_property(&self, name: &str) -> Option<PropertyValue> {
        let int = |v: Option<u16>| match v {
            Some(v) => PropertyValue::Integer(v.into()),
            None => PropertyValue::Text("notApplicable".into()),
        };
        self.with_dc(|dc| {
            Some(match name {
                "webrtc.ordered" => PropertyValue::Bool(
                    js_sys::Reflect::get(dc, &"ordered".into())
                        .ok()?
                        .as_bool()?,
                ),
                "webrtc.maxretransmits" => int(dc.max_retransmits()),
                "webrtc.maxpacketlifetime" => int(dc.max_packet_life_time()),
                "webrtc.label" => PropertyValue::Text(dc.label()),
                _ => return None,
            })
        })
        .ok()
        .flatten()
    }
}

/// The address a page reports for its peer: the browser does not tell it.
fn unknown_remote() -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0)
}

/// A new RTCPeerConnection (no STUN/TURN servers: host candidates only)
/// whose incoming channels go to `incoming`.
fn new_peer(incoming: mpsc::UnboundedSender<io::Result<Incoming>>) -> io::Result<Arc<PeerInner>> {
    let pc = RtcPeerConnection::new_with_configuration(&RtcConfiguration::new())
        .map_err(js_err("creating an RTCPeerConnection"))?;
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let peer = Arc::new(PeerInner { id });
    // Weak: the peer's own handler must not keep the peer alive.
    let weak: Weak<PeerInner> = Arc::downgrade(&peer);
    let ondatachannel =
        Closure::<dyn FnMut(RtcDataChannelEvent)>::new(move |e: RtcDataChannelEvent| {
            let dc = e.channel();
            match weak.upgrade() {
                Some(peer) => {
                    let t = WebrtcTransport::adopt(dc, peer);
                    let _ = incoming.unbounded_send(Ok(Incoming {
                        transport: Transport::Webrtc(t),
                        caps: &Capabilities::WEBRTC,
                        remote: unknown_remote(),
                        group: Some(0),
                        room: Default::default(),
                    }));
                }
                None => dc.close(),
            }
        });
    pc.set_ondatachannel(Some(ondatachannel.as_ref().unchecked_ref()));
    PEERS.with(|p| {
        p.borrow_mut().insert(
            id,
            PeerBrowser {
                pc,
                _ondatachannel: ondatachannel,
            },
        )
    });
    Ok(peer)
}

/// Set the local description from a createOffer/createAnswer result and
/// wait for ICE gathering to complete, or for [`GATHER_GRACE`] when some
/// candidates are there (signaling is not trickled: the SDP carries them
/// all); returns the local SDP.
async fn local_sdp(peer: &PeerInner, desc: JsValue, kind: RtcSdpType) -> io::Result<String> {
    let sdp = js_sys::Reflect::get(&desc, &"sdp".into())
        .ok()
        .and_then(|v| v.as_string())
        .ok_or_else(|| io::Error::other("the browser's session description has no SDP"))?;
    let init = RtcSessionDescriptionInit::new(kind);
    init.set_sdp(&sdp);
    let p = peer.with_pc(|pc| pc.set_local_description(&init))?;
    JsFuture::from(p)
        .await
        .map_err(js_err("setLocalDescription"))?;
    let start = crate::runtime::now();
    let sdp = || -> io::Result<String> {
        peer.with_pc(|pc| pc.local_description().map(|d| d.sdp()))?
            .ok_or_else(|| io::Error::other("the browser has no local description"))
    };
    while peer.with_pc(|pc| pc.ice_gathering_state())? != RtcIceGatheringState::Complete {
        let waited = crate::runtime::now().duration_since(start);
        if waited >= GATHER_GRACE {
            let now = sdp()?;
            if now.contains("\na=candidate:") {
                return Ok(now);
            }
        }
        if waited > GATHER_TIMEOUT {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "no ICE candidate gathered within {}",
                    crate::runtime::ms_text(GATHER_TIMEOUT)
                ),
            ));
        }
        crate::runtime::sleep(Duration::from_millis(10)).await;
    }
    sdp()
}

async fn set_remote(peer: &PeerInner, kind: RtcSdpType, sdp: &str) -> io::Result<()> {
    let init = RtcSessionDescriptionInit::new(kind);
    init.set_sdp(sdp);
    let p = peer.with_pc(|pc| pc.set_remote_description(&init))?;
    JsFuture::from(p).await.map(|_| ()).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("setRemoteDescription: {}", js_text(&e)),
        )
    })
}

/// An offer made, waiting for the answer.
pub(crate) struct WebrtcOffer {
    peer: Arc<PeerInner>,
    first: WebrtcTransport,
    rx: mpsc::UnboundedReceiver<io::Result<Incoming>>,
    sdp: String,
}

impl WebrtcOffer {
    /// A new RTCPeerConnection with the first data channel, and its offer.
    pub(crate) async fn create(
        _opts: &SocketOptions,
        channel: &DataChannelOptions,
    ) -> io::Result<WebrtcOffer> {
        let (tx, rx) = mpsc::unbounded();
        let peer = new_peer(tx)?;
        let dc = peer.with_pc(|pc| {
            pc.create_data_channel_with_data_channel_dict(&channel.label, &channel_init(channel))
        })?;
        let first = WebrtcTransport::adopt(dc, peer.clone());
        let p = peer.with_pc(|pc| pc.create_offer())?;
        let desc = JsFuture::from(p).await.map_err(js_err("createOffer"))?;
        let sdp = local_sdp(&peer, desc, RtcSdpType::Offer).await?;
        Ok(WebrtcOffer {
            peer,
            first,
            rx,
            sdp,
        })
    }

    /// The offer's SDP.
    pub(crate) fn sdp(&self) -> String {
        self.sdp.clone()
    }

    /// Apply the peer's answer.
    pub(crate) async fn accept_answer(self, sdp: &str) -> io::Result<WebrtcPeer> {
        set_remote(&self.peer, RtcSdpType::Answer, sdp).await?;
        Ok(WebrtcPeer {
            peer: self.peer,
            first: Mutex::new(Some(self.first)),
            rx: futures::lock::Mutex::new(self.rx),
        })
    }
}

/// A peer connection after the offer/answer: yields its data channels.
pub(crate) struct WebrtcPeer {
    peer: Arc<PeerInner>,
    first: Mutex<Option<WebrtcTransport>>,
    rx: futures::lock::Mutex<mpsc::UnboundedReceiver<io::Result<Incoming>>>,
}

impl WebrtcPeer {
    /// Answer an offer.
    pub(crate) async fn answer(
        offer_sdp: &str,
        _opts: &SocketOptions,
    ) -> io::Result<(WebrtcPeer, String)> {
        let (tx, rx) = mpsc::unbounded();
        let peer = new_peer(tx)?;
        set_remote(&peer, RtcSdpType::Offer, offer_sdp).await?;
        let p = peer.with_pc(|pc| pc.create_answer())?;
        let desc = JsFuture::from(p).await.map_err(js_err("createAnswer"))?;
        let sdp = local_sdp(&peer, desc, RtcSdpType::Answer).await?;
        Ok((
            WebrtcPeer {
                peer,
                first: Mutex::new(None),
                rx: futures::lock::Mutex::new(rx),
            },
            sdp,
        ))
    }

    /// The first data channel (the offerer's own, or the first the offerer
    /// opened), once open.
    pub(crate) async fn first_channel(&self) -> io::Result<Transport> {
        let own = self.first.lock().unwrap_or_else(|e| e.into_inner()).take();
        let t = match own {
            Some(t) => t,
            None => match self.rx.lock().await.next().await {
                Some(Ok(i)) => match i.transport {
                    Transport::Webrtc(t) => t,
                    other => return Ok(other),
                },
                Some(Err(e)) => return Err(e),
                None => {
                    return Err(io::Error::other(
                        "the WebRTC peer connection ended before a data channel opened",
                    ))
                }
            },
        };
        t.wait_open().await?;
        Ok(Transport::Webrtc(t))
    }

    /// The peer's further channels, as a Listener backend.
    pub(crate) fn into_incoming(self) -> super::BackendListener {
        // The channels hold the peer; this handle is no longer needed.
        let _ = self.peer;
        super::BackendListener::from_channel(self.rx.into_inner())
    }
}

/// POST `body` (JSON) to `url` with `fetch` and return the response text
/// (status 200 only). `fetch` verifies an `https://` server with the page's
/// trust: SecurityParameters that ask for anything else are refused.
pub(crate) async fn http_post_json(
    url: &str,
    body: String,
    sec: &crate::security::SecurityParameters,
) -> io::Result<String> {
    let refuse = |why: String| io::Error::new(io::ErrorKind::InvalidInput, why);
    if !sec.pinned_server_certificate.is_empty() {
        return Err(refuse(
            "HttpSignaling::with_security: pinned_server_certificate (fetch verifies with the page's trust)".into(),
        ));
    }
    super::check_security(sec)
        .map_err(|e| refuse(format!("HttpSignaling::with_security: {}", e.message)))?;
    #[wasm_bindgen::prelude::wasm_bindgen]
    extern "C" {
        #[wasm_bindgen(js_name = fetch)]
        fn fetch_with_init(input: &str, init: &web_sys::RequestInit) -> js_sys::Promise;
    }
    let init = web_sys::RequestInit::new();
    init.set_method("POST");
    init.set_body(&JsValue::from_str(&body));
    let headers = web_sys::Headers::new().map_err(js_err("Headers"))?;
    headers
        .set("Content-Type", "application/json")
        .map_err(js_err("Headers"))?;
    init.set_headers(&headers);
    let resp = JsFuture::from(fetch_with_init(url, &init))
        .await
        .map_err(js_err(
            "fetch (the browser does not say why: refused, unreachable or CORS)",
        ))?;
    let resp: web_sys::Response = resp
        .dyn_into()
        .map_err(|_| io::Error::other("fetch returned no Response"))?;
    let text = JsFuture::from(resp.text().map_err(js_err("Response.text"))?)
        .await
        .map_err(js_err("reading the response"))?
        .as_string()
        .unwrap_or_default();
    if !resp.ok() {
        return Err(io::Error::other(format!(
            "HTTP {} {}: {}",
            resp.status(),
            resp.status_text(),
            text.chars().take(200).collect::<String>()
        )));
    }
    Ok(text)
}
