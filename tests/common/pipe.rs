//! An in-process signaling channel, as an application would write its own
//! `Signaling`: two ends that carry each other's messages. Shared by the
//! WebRTC tests (native and in the browser) and the memory benchmark
//! (`#[path]`-included; it needs only postsocket and futures).

use futures::channel::mpsc;
use futures::StreamExt;
use postsocket::rendezvous::SignalingFuture;
use postsocket::{
    ErrorReason, Preconnection, RendezvousDone, SecurityParameters, Signaling, SignalingMessage,
    SignalingRole, TransportProperties,
};

/// One end of the channel.
pub struct Pipe {
    role: SignalingRole,
    tx: mpsc::UnboundedSender<SignalingMessage>,
    rx: mpsc::UnboundedReceiver<SignalingMessage>,
}

impl Signaling for Pipe {
    fn role(&self) -> SignalingRole {
        self.role
    }
    fn send(&mut self, m: SignalingMessage) -> SignalingFuture<'_, ()> {
        let r = self
            .tx
            .unbounded_send(m)
            .map_err(|_| postsocket::Error::new(ErrorReason::EstablishmentFailed, "pipe closed"));
        Box::pin(async move { r })
    }
    fn receive(&mut self) -> SignalingFuture<'_, SignalingMessage> {
        Box::pin(async move {
            self.rx.next().await.ok_or_else(|| {
                postsocket::Error::new(ErrorReason::EstablishmentFailed, "pipe closed")
            })
        })
    }
}

/// The two ends: the offerer's and the answerer's.
pub fn pipes() -> (Pipe, Pipe) {
    let (a_tx, b_rx) = mpsc::unbounded();
    let (b_tx, a_rx) = mpsc::unbounded();
    (
        Pipe {
            role: SignalingRole::Offerer,
            tx: a_tx,
            rx: a_rx,
        },
        Pipe {
            role: SignalingRole::Answerer,
            tx: b_tx,
            rx: b_rx,
        },
    )
}

/// Two peers with default properties rendezvoused over a new pipe, in this
/// process (or page): the offerer's and the answerer's RendezvousDone.
pub async fn pair() -> (RendezvousDone, RendezvousDone) {
    let (offerer, answerer) = pipes();
    let pre = || {
        Preconnection::new(
            vec![],
            vec![],
            TransportProperties::new(),
            SecurityParameters::new(),
        )
    };
    let (a, b) = futures::join!(pre().rendezvous(offerer), pre().rendezvous(answerer));
    let a = a.unwrap_or_else(|e| panic!("offerer: {e}"));
    let b = b.unwrap_or_else(|e| panic!("answerer: {e}"));
    (a, b)
}
