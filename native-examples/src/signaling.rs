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

/// What to do with each peer connection once its first data channel is open.
pub type OnRendezvous = Arc<dyn Fn(RendezvousDone) + Send + Sync>;

/// Answer one JSON offer: the JSON answer, or an HTTP status and why. The
/// rendezvous completes in the background and goes to `on_done`.
pub async fn answer(body: &[u8], on_done: OnRendezvous) -> Result<String, (StatusCode, String)> {
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
        match pending.done().await {
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
