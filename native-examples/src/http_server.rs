//! The HTTP/1.1 accept loop (hyper) of the example servers: `demo-server`
//! and the WebRTC signaling route of `webrtc-echo` and `tapscat`.

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::future::Future;
use std::time::Duration;
use tokio::net::TcpListener;

/// How long a client may take to send a request head (hyper's default,
/// which it applies only with a timer set).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Answer every request on `listener` with `handler`, until the task is
/// dropped. A failed accept is logged and retried after a short pause.
pub async fn serve<H, F>(listener: TcpListener, handler: H)
where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    serve_with(listener, handler, HEADER_READ_TIMEOUT).await
}

/// [`serve`], with `header_timeout` for each request head.
async fn serve_with<H, F>(listener: TcpListener, handler: H, header_timeout: Duration)
where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                eprintln!("http: accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let handler = handler.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let handler = handler.clone();
                async move { Ok::<_, std::convert::Infallible>(handler(req).await) }
            });
            // A client that sends no whole request head within
            // `header_timeout` (the first, or the next on a kept-alive
            // connection) is disconnected: hyper applies the timeout only
            // with a timer.
            let _ = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A client that never finishes its request head is disconnected after
    /// the header timeout (200 ms here; HEADER_READ_TIMEOUT in the servers).
    /// Without a timer hyper applied no timeout at all.
    #[tokio::test]
    async fn a_request_head_never_finished_is_cut_off() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let handler = |_req| async { Response::new(Full::new(Bytes::from_static(b"ok"))) };
        tokio::spawn(serve_with(l, handler, Duration::from_millis(200)));
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await.unwrap();
        let mut b = [0u8; 256];
        let ended = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                match s.read(&mut b).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {} // a 408 answer, then the end
                }
            }
        })
        .await;
        assert!(ended.is_ok(), "the connection is still open");
    }
}
