//! HTTP signaling for WebRTC Rendezvous, the answerer's side (hyper): a peer
//! POSTs its offer (`{"type":"offer","sdp":"..."}`, as
//! `postsocket::HttpSignaling` sends it) and gets the answer in the response,
//! answered by `Preconnection::answer_offer`. CORS is allowed, so a page from
//! another origin may signal. Used by `webrtc-echo`, `tapscat --listen
//! --protocol webrtc` and the demo server.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use postsocket::{
    Preconnection, RendezvousDone, SecurityParameters, SignalingMessage, TransportProperties,
};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// Largest request accepted (an SDP offer is a few KB).
pub const MAX_OFFER: usize = 256 * 1024;

/// How many answered offers may wait for their peer at once, in this
/// process: each holds a UDP socket and a peer connection until the peer
/// connects or the rendezvous gives up (30 s). Past it an offer gets 503
/// Service Unavailable, so a flood of offers cannot exhaust the server.
pub const MAX_PENDING_OFFERS: usize = 64;

/// Room for answered offers waiting for their peers.
struct PendingOffers {
    room: Arc<tokio::sync::Semaphore>,
    max: usize,
}

impl PendingOffers {
    fn new(max: usize) -> Self {
        PendingOffers {
            room: Arc::new(tokio::sync::Semaphore::new(max)),
            max,
        }
    }
}

fn pending_offers() -> &'static PendingOffers {
    static PENDING: std::sync::OnceLock<PendingOffers> = std::sync::OnceLock::new();
    PENDING.get_or_init(|| PendingOffers::new(MAX_PENDING_OFFERS))
}

/// What to do with each peer connection once its first data channel is open.
pub type OnRendezvous = Arc<dyn Fn(RendezvousDone) + Send + Sync>;

/// Answer one JSON offer: the JSON answer, or an HTTP status and why. The
/// rendezvous completes in the background and goes to `on_done`. At most
/// [`MAX_PENDING_OFFERS`] wait at once.
pub async fn answer(body: &[u8], on_done: OnRendezvous) -> Result<String, (StatusCode, String)> {
    answer_within(body, on_done, pending_offers()).await
}

/// [`answer`], with room for pending offers in `offers`.
async fn answer_within(
    body: &[u8],
    on_done: OnRendezvous,
    offers: &PendingOffers,
) -> Result<String, (StatusCode, String)> {
    let place = offers.room.clone().try_acquire_owned().map_err(|_| {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "{} WebRTC offers already wait for their peers (each until it connects, at most 30 s): try again later",
                offers.max
            ),
        )
    })?;
    let text = std::str::from_utf8(body).map_err(|_| {
        (
            StatusCode::BAD_REQUEST,
            "the offer is not UTF-8".to_string(),
        )
    })?;
    let sdp = match SignalingMessage::from_json(text) {
        Ok(SignalingMessage::Offer { sdp }) => sdp,
        Ok(SignalingMessage::Answer { .. }) => {
            return Err((
                StatusCode::BAD_REQUEST,
                "expected an offer, got an answer".into(),
            ))
        }
        Err(e) => return Err((StatusCode::BAD_REQUEST, e.to_string())),
    };
    let pre = Preconnection::new(
        vec![],
        vec![],
        TransportProperties::new(),
        SecurityParameters::new(),
    );
    let (answer, pending) = pre
        .answer_offer(&sdp)
        .await
        .map_err(|e| (StatusCode::BAD_REQUEST, e.to_string()))?;
    tokio::spawn(async move {
        let result = pending.done().await;
        drop(place);
        match result {
            Ok(done) => on_done(done),
            Err(e) => eprintln!("WebRTC rendezvous failed: {e}"),
        }
    });
    Ok(SignalingMessage::Answer { sdp: answer }.to_json())
}

fn respond(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("access-control-allow-origin", "*")
        .header("access-control-allow-methods", "POST, OPTIONS")
        .header("access-control-allow-headers", "content-type")
        .body(Full::new(Bytes::from(body)))
        .expect("valid response")
}

async fn handle(req: Request<Incoming>, on_done: OnRendezvous) -> Response<Full<Bytes>> {
    match (req.method(), req.uri().path()) {
        (&Method::OPTIONS, _) => respond(StatusCode::NO_CONTENT, String::new()),
        (&Method::POST, "/offer") => {
            let body = match Limited::new(req.into_body(), MAX_OFFER).collect().await {
                Ok(b) => b.to_bytes(),
                Err(e) => {
                    return respond(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        format!("\"offer: {e} (limit {MAX_OFFER} bytes)\""),
                    )
                }
            };
            match answer(&body, on_done).await {
                Ok(json) => respond(StatusCode::OK, json),
                Err((status, why)) => {
                    respond(status, serde_json::json!({ "error": why }).to_string())
                }
            }
        }
        (m, p) => respond(
            StatusCode::NOT_FOUND,
            serde_json::json!({ "error": format!("{m} {p}: only POST /offer") }).to_string(),
        ),
    }
}

/// Serve `POST /offer` on `http` until the task is dropped; every request is
/// bounded to 30 s.
pub async fn serve(http: TcpListener, on_done: OnRendezvous) {
    crate::http_server::serve(http, move |req| {
        let on_done = on_done.clone();
        async move {
            tokio::time::timeout(Duration::from_secs(30), handle(req, on_done))
                .await
                .unwrap_or_else(|_| {
                    respond(
                        StatusCode::GATEWAY_TIMEOUT,
                        "\"answering took over 30 s\"".into(),
                    )
                })
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use postsocket::{Signaling, SignalingFuture, SignalingRole};

    /// An offerer's signaling that hands its offer to the test and never
    /// answers: the rendezvous stays pending on both sides.
    struct Capture(Option<tokio::sync::oneshot::Sender<String>>);

    impl Signaling for Capture {
        fn role(&self) -> SignalingRole {
            SignalingRole::Offerer
        }
        fn send(&mut self, message: SignalingMessage) -> SignalingFuture<'_, ()> {
            if let Some(tx) = self.0.take() {
                let _ = tx.send(message.to_json());
            }
            Box::pin(async { Ok(()) })
        }
        fn receive(&mut self) -> SignalingFuture<'_, SignalingMessage> {
            Box::pin(std::future::pending())
        }
    }

    /// A fresh offer from a native peer that will never hear the answer.
    async fn offer() -> String {
        let (tx, rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let pre = Preconnection::new(
                vec![],
                vec![],
                TransportProperties::new(),
                SecurityParameters::new(),
            );
            let _ =
                tokio::time::timeout(Duration::from_secs(20), pre.rendezvous(Capture(Some(tx))))
                    .await;
        });
        tokio::time::timeout(Duration::from_secs(10), rx)
            .await
            .expect("an offer within 10 s")
            .unwrap()
    }

    /// Offers answered but not yet connected are bounded: past the bound
    /// (2 here) the next gets 503 with the reason; a failed offer takes no
    /// place.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn pending_offers_are_bounded() {
        let offers = PendingOffers::new(2);
        let on_done: OnRendezvous = Arc::new(|_| {});
        assert_eq!(
            answer_within(b"not json", on_done.clone(), &offers)
                .await
                .unwrap_err()
                .0,
            StatusCode::BAD_REQUEST
        );
        for _ in 0..2 {
            let body = offer().await;
            answer_within(body.as_bytes(), on_done.clone(), &offers)
                .await
                .expect("answered");
        }
        let body = offer().await;
        let (status, why) = answer_within(body.as_bytes(), on_done, &offers)
            .await
            .unwrap_err();
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(why.contains("2 WebRTC offers already wait"), "{why}");
    }
}
