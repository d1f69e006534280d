//! The demo server's HTTP side (hyper): the page and the npm package as
//! static files, and a small JSON API:
//!
//! | route                   | what it does                                              |
//! |-------------------------|-----------------------------------------------------------|
//! | `GET /api/config`       | the echo port, the WebTransport certificate hash, faults   |
//! | `POST /api/fault`       | `{"stack":"ws"\|"wt","mode":"none"\|"delay"\|"blackhole"\|"refuse","ms":N}` |
//! | `GET /api/races`        | the native race scenarios                                  |
//! | `POST /api/native-race` | `{"scenario":"ipv6-blackholed"}`: run it, return its report |
//! | `POST /api/offer`       | WebRTC signaling: an SDP offer in, the answer out; the native peer echoes |
//!
//! Errors are JSON `{"error": "..."}` with a 4xx/5xx status that says what was wrong.
//!
//! The API answers only the demo's own page: the `Host` must name this
//! machine's loopback (`127.0.0.1`, `localhost`, `[::1]`), so that a site
//! whose name resolves to 127.0.0.1 (DNS rebinding) gets nothing, and a
//! browser's `Origin`, when it sends one, must be this server's own, so that
//! another site cannot make the visitor's browser POST faults or offers
//! (CSRF). Anything else is 403 with the reason.

use super::faults::{Fault, FrontState};
use super::races;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde::{Deserialize, Serialize};
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};

/// What the page learns from `GET /api/config`.
#[derive(Debug, Clone, Serialize)]
pub struct PageConfig {
    /// The port number that serves WebSocket (TCP) and WebTransport (UDP), through the fault relay.
    pub echo_port: u16,
    /// The WebSocket path.
    pub ws_path: String,
    /// The WebTransport path.
    pub wt_path: String,
    /// SHA-256 (hex) of the current WebTransport certificate.
    pub wt_cert_sha256: String,
    /// Its expiry, seconds since the Unix epoch.
    pub wt_cert_not_after: i64,
    /// The stacks the echo Listener serves.
    pub stacks: Vec<String>,
}

/// Everything the HTTP handlers share.
pub struct App {
    /// The page's files.
    pub www: PathBuf,
    /// The npm package's files (served under `/pkg/`).
    pub pkg: PathBuf,
    /// Faults and the relay's upstream.
    pub front: Arc<FrontState>,
    /// The current page configuration (the certificate hash changes on rotation).
    pub config: Mutex<PageConfig>,
}

/// Largest request body accepted.
const MAX_BODY: usize = 64 * 1024;

type Resp = Response<Full<Bytes>>;

fn json<T: Serialize>(status: StatusCode, v: &T) -> Resp {
    let body = serde_json::to_vec(v).expect("plain data serializes");
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("cache-control", "no-store")
        .body(Full::new(Bytes::from(body)))
        .expect("valid response")
}

fn error(status: StatusCode, message: impl Into<String>) -> Resp {
    #[derive(Serialize)]
    struct E {
        error: String,
    }
    json(
        status,
        &E {
            error: message.into(),
        },
    )
}

async fn body_json<T: for<'de> Deserialize<'de>>(req: Request<Incoming>) -> Result<T, Resp> {
    let bytes = Limited::new(req.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|e| {
            error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("request body: {e} (limit {MAX_BODY} bytes)"),
            )
        })?
        .to_bytes();
    serde_json::from_slice(&bytes).map_err(|e| {
        error(
            StatusCode::BAD_REQUEST,
            format!("request body is not valid: {e}"),
        )
    })
}

/// A fault request from the page.
#[derive(Debug, Deserialize)]
struct FaultRequest {
    stack: String,
    #[serde(flatten)]
    fault: Fault,
}

#[derive(Debug, Deserialize)]
struct RaceRequest {
    scenario: String,
}

/// Whether a request to the API comes from the demo's own page (see the
/// module's doc): the reason it does not, if so.
pub fn foreign_request(host: Option<&str>, origin: Option<&str>) -> Option<String> {
    let Some(host) = host else {
        return Some("no Host header".into());
    };
    let name = match host.rsplit_once(':') {
        Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) => name,
        _ => host,
    };
    if !matches!(name, "127.0.0.1" | "localhost" | "[::1]") {
        return Some(format!(
            "Host {host:?} is not this machine's loopback: the demo's API answers only its own page"
        ));
    }
    match origin {
        Some(o) if o != format!("http://{host}") => Some(format!(
            "Origin {o:?} is not this server's (http://{host}): cross-site requests are refused"
        )),
        _ => None,
    }
}

/// Answer one request.
pub async fn handle(app: Arc<App>, req: Request<Incoming>) -> Resp {
    let path = req.uri().path().to_string();
    if path.starts_with("/api/") {
        let header = |name| {
            req.headers()
                .get(name)
                .map(|v| v.to_str().unwrap_or("(not text)"))
        };
        if let Some(why) =
            foreign_request(header(hyper::header::HOST), header(hyper::header::ORIGIN))
        {
            return error(StatusCode::FORBIDDEN, why);
        }
    }
    match (req.method().clone(), path.as_str()) {
        (Method::GET, "/api/config") => {
            let mut v = serde_json::to_value(&*app.config.lock().expect("config lock"))
                .expect("config serializes");
            v["faults"] = serde_json::to_value(app.front.faults()).expect("faults serialize");
            json(StatusCode::OK, &v)
        }
        (Method::POST, "/api/fault") => {
            let r: FaultRequest = match body_json(req).await {
                Ok(r) => r,
                Err(resp) => return resp,
            };
            if let Err(e) = r.fault.validate() {
                return error(StatusCode::BAD_REQUEST, e);
            }
            let mut faults = app.front.faults();
            match r.stack.as_str() {
                "ws" | "wss" | "tcp" => faults.tcp = r.fault,
                "wt" | "udp" => faults.udp = r.fault,
                other => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        format!("unknown stack {other:?}: faults apply to ws (TCP) or wt (UDP)"),
                    )
                }
            }
            app.front.set_faults(faults);
            json(StatusCode::OK, &faults)
        }
        (Method::POST, "/api/offer") => {
            let body = match Limited::new(req.into_body(), crate::signaling::MAX_OFFER)
                .collect()
                .await
            {
                Ok(b) => b.to_bytes(),
                Err(e) => return error(StatusCode::PAYLOAD_TOO_LARGE, format!("offer: {e}")),
            };
            let on_done: crate::signaling::OnRendezvous =
                std::sync::Arc::new(super::echo::echo_rendezvous);
            match crate::signaling::answer(&body, on_done).await {
                Ok(json) => Response::builder()
                    .header("content-type", "application/json")
                    .body(Full::new(Bytes::from(json)))
                    .expect("valid response"),
                Err((status, why)) => error(status, why),
            }
        }
        (Method::GET, "/api/races") => json(StatusCode::OK, &races::SCENARIOS),
        (Method::POST, "/api/native-race") => {
            let r: RaceRequest = match body_json(req).await {
                Ok(r) => r,
                Err(resp) => return resp,
            };
            let s = match races::scenario(&r.scenario) {
                Ok(s) => s,
                Err(e) => return error(StatusCode::BAD_REQUEST, e),
            };
            match races::run(s).await {
                Ok(report) => json(StatusCode::OK, &report),
                Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
            }
        }
        (Method::GET | Method::HEAD, _) if !path.starts_with("/api/") => {
            static_file(&app.www, &app.pkg, &path).await
        }
        (_, p) if p.starts_with("/api/") => error(
            StatusCode::NOT_FOUND,
            format!("no route {} {p}", req.method()),
        ),
        (m, p) => error(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{m} {p}: static files are GET only"),
        ),
    }
}

/// `/` → `www/index.html`, `/pkg/...` → the npm package (`pkg`), else
/// `www/...`. Paths with `..` or other non-normal parts are refused; a
/// directory is not a file (404). An error names the requested path only:
/// where the demo's files live on the server is the server's own business
/// (its log has the whole path).
async fn static_file(www: &Path, pkg: &Path, path: &str) -> Resp {
    let (root, rel) = match path.strip_prefix("/pkg/") {
        Some(rest) => (pkg, rest),
        None => (www, path.trim_start_matches('/')),
    };
    let rel = if rel.is_empty() { "index.html" } else { rel };
    let rel = Path::new(rel);
    if !rel.components().all(|c| matches!(c, Component::Normal(_))) {
        return error(StatusCode::BAD_REQUEST, format!("bad path {path}"));
    }
    let file = root.join(rel);
    match tokio::fs::read(&file).await {
        Ok(data) => Response::builder()
            .header("content-type", content_type(&file))
            .header("cache-control", "no-store")
            .body(Full::new(Bytes::from(data)))
            .expect("valid response"),
        Err(e)
            if e.kind() == std::io::ErrorKind::NotFound
                || e.kind() == std::io::ErrorKind::IsADirectory =>
        {
            let hint = if path.starts_with("/pkg/") {
                " (the npm package is not built: run scripts/build-npm.sh)"
            } else {
                ""
            };
            error(StatusCode::NOT_FOUND, format!("{path} not found{hint}"))
        }
        Err(e) => {
            eprintln!("demo-server: reading {}: {e}", file.display());
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("{path} could not be read: {}", e.kind()),
            )
        }
    }
}

fn content_type(p: &Path) -> &'static str {
    match p.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" => "application/json",
        "wasm" => "application/wasm",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ts" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::foreign_request;

    #[cfg(unix)]
    /// A directory is not found, and an unreadable file is an error that
    /// names the requested path, never where the files live on the server.
    #[tokio::test]
    async fn static_file_errors_do_not_show_the_server_s_paths() {
        use http_body_util::BodyExt as _;
        let dir = std::env::temp_dir().join(format!("demo-static-{}", std::process::id()));
        let www = dir.join("www");
        let _ = std::fs::remove_dir_all(&dir); // a failed run's
        std::fs::create_dir_all(www.join("sub")).unwrap();
        std::fs::write(www.join("index.html"), "hello").unwrap();
        // A symbolic link to itself: reading it fails (ELOOP) even as root.
        std::os::unix::fs::symlink("loop", www.join("loop")).unwrap();
        let body = |r: super::Resp| async move {
            String::from_utf8(r.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
        };
        let ok = super::static_file(&www, &www, "/").await;
        assert_eq!(ok.status(), 200);
        assert_eq!(body(ok).await, "hello");
        let d = super::static_file(&www, &www, "/sub").await;
        assert_eq!(d.status(), 404);
        let text = body(d).await;
        assert!(text.contains("/sub not found"), "{text}");
        let e = super::static_file(&www, &www, "/loop").await;
        assert_eq!(e.status(), 500);
        let text = body(e).await;
        assert!(text.contains("/loop could not be read"), "{text}");
        assert!(!text.contains(dir.to_str().unwrap()), "{text}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn only_the_demo_page_reaches_the_api() {
        // The page itself (fetch sends Origin on POST), and tools without one.
        assert_eq!(
            foreign_request(Some("127.0.0.1:8080"), Some("http://127.0.0.1:8080")),
            None
        );
        assert_eq!(
            foreign_request(Some("localhost:8080"), Some("http://localhost:8080")),
            None
        );
        assert_eq!(foreign_request(Some("127.0.0.1:8080"), None), None);
        // Cross-site POST (CSRF), another port, DNS rebinding, no Host.
        let csrf = foreign_request(Some("127.0.0.1:8080"), Some("https://evil.example")).unwrap();
        assert!(csrf.contains("cross-site"), "{csrf}");
        assert!(foreign_request(Some("127.0.0.1:8080"), Some("http://127.0.0.1:9999")).is_some());
        let rebound = foreign_request(Some("evil.example:8080"), None).unwrap();
        assert!(rebound.contains("loopback"), "{rebound}");
        assert!(foreign_request(Some("127.0.0.1.evil.example"), None).is_some());
        assert!(foreign_request(None, None).is_some());
    }
}
