//! A minimal HTTP/1.1 POST for signaling (`rendezvous::HttpSignaling`):
//! `http://` and `https://` URLs (TLS by rustls, the server verified as
//! `SecurityParameters` say), one request per connection, bounded in size
//! and time.

use crate::security::{SecurityMode, SecurityParameters};
use std::io;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Largest response accepted (an SDP answer is a few KB).
const MAX_RESPONSE: usize = 1 << 20;
/// The whole exchange must finish within this time.
const TIMEOUT: Duration = Duration::from_secs(10);

/// A signaling URL, split.
#[derive(Debug, PartialEq)]
pub(crate) struct Url {
    /// `https://`.
    pub(crate) secure: bool,
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) path: String,
}

/// Split `http://host:port/path` (or `https://`) into its parts.
pub(crate) fn split_url(url: &str) -> io::Result<Url> {
    let bad = |why: &str| io::Error::new(io::ErrorKind::InvalidInput, format!("URL {url}: {why}"));
    let (secure, rest) = match (url.strip_prefix("https://"), url.strip_prefix("http://")) {
        (Some(rest), _) => (true, rest),
        (None, Some(rest)) => (false, rest),
        (None, None) => return Err(bad("a signaling URL starts with http:// or https://")),
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let end = v6.find(']').ok_or_else(|| bad("unclosed [ in the host"))?;
        let port = v6[end + 1..].strip_prefix(':');
        (v6[..end].to_string(), port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (authority.to_string(), None),
        }
    };
    let port = match port {
        Some(p) => p.parse().map_err(|_| bad("the port is not a number"))?,
        None if secure => 443,
        None => 80,
    };
    if host.is_empty() {
        return Err(bad("no host"));
    }
    Ok(Url {
        secure,
        host,
        port,
        path: path.to_string(),
    })
}

/// POST `body` as JSON to `url` and return the response body (status 200
/// only). An `https://` server is verified as `sec` says (by default:
/// the system's roots and the URL's host name).
pub(crate) async fn http_post_json(
    url: &str,
    body: String,
    sec: &SecurityParameters,
) -> io::Result<String> {
    tokio::time::timeout(TIMEOUT, post(url, body, sec))
        .await
        .map_err(|_| {
            io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no answer within {TIMEOUT:?}"),
            )
        })?
}

async fn post(url: &str, body: String, sec: &SecurityParameters) -> io::Result<String> {
    let url = split_url(url)?;
    if !url.secure {
        let stream = tokio::net::TcpStream::connect((url.host.as_str(), url.port)).await?;
        return exchange(stream, &url, body).await;
    }
    if sec.mode() == SecurityMode::Disabled {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "an https:// signaling URL with security disabled: give HttpSignaling::with_security parameters that allow TLS, or use http://",
        ));
    }
    #[cfg(feature = "tls")]
    {
        let name = sec.server_name.clone().unwrap_or_else(|| url.host.clone());
        let who = format!("the signaling server {name}");
        let tcp = tokio::net::TcpStream::connect((url.host.as_str(), url.port)).await?;
        let tls = super::tls::connect_http1(tcp, sec, name, Default::default(), &who).await?;
        exchange(tls, &url, body).await
    }
    #[cfg(not(feature = "tls"))]
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "an https:// signaling URL needs TLS, which is not in this build (postsocket's cargo feature `tls`)",
    ))
}

/// The request and its response over `stream`.
async fn exchange(
    mut stream: impl AsyncRead + AsyncWrite + Unpin,
    url: &Url,
    body: String,
) -> io::Result<String> {
    let (host, port, path) = (&url.host, url.port, &url.path);
    let host_header = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: {host_header}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(req.as_bytes()).await?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() > MAX_RESPONSE {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("the response is over {MAX_RESPONSE} bytes"),
            ));
        }
        if let Some(body) = complete(&buf, false)? {
            return body;
        }
    }
    complete(&buf, true)?.unwrap_or_else(|| {
        Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the server closed the connection before a complete HTTP response",
        ))
    })
}

/// The fuzz harness: any bytes as a (partial) response, before and at EOF.
#[cfg(feature = "fuzzing")]
pub(crate) fn fuzz_response(buf: &[u8]) {
    let _ = complete(buf, false);
    let _ = complete(buf, true);
}

/// The body once the response is complete (by Content-Length), or None.
fn complete(buf: &[u8], eof: bool) -> io::Result<Option<io::Result<String>>> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    let head = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("not an HTTP response: {e}"),
            ))
        }
    };
    let len = resp
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        .and_then(|h| {
            std::str::from_utf8(h.value)
                .ok()?
                .trim()
                .parse::<usize>()
                .ok()
        });
    let body = &buf[head..];
    match len {
        Some(l) if body.len() < l => return Ok(None),
        None if !eof => return Ok(None),
        _ => {}
    }
    let body = &body[..len.unwrap_or(body.len())];
    let code = resp.code.unwrap_or(0);
    let text = String::from_utf8_lossy(body).into_owned();
    if code != 200 {
        return Ok(Some(Err(io::Error::other(format!(
            "HTTP {code} {}: {}",
            resp.reason.unwrap_or(""),
            text.chars().take(200).collect::<String>()
        )))));
    }
    Ok(Some(Ok(text)))
}

#[cfg(test)]
mod tests {
    use super::split_url;

    fn parts(url: &str) -> (bool, String, u16, String) {
        let u = split_url(url).unwrap();
        (u.secure, u.host, u.port, u.path)
    }

    #[test]
    fn urls() {
        assert_eq!(
            parts("http://127.0.0.1:8080/offer"),
            (false, "127.0.0.1".into(), 8080, "/offer".into())
        );
        assert_eq!(
            parts("http://[::1]:9/x"),
            (false, "::1".into(), 9, "/x".into())
        );
        assert_eq!(parts("http://h"), (false, "h".into(), 80, "/".into()));
        assert_eq!(parts("https://h/o"), (true, "h".into(), 443, "/o".into()));
        assert!(split_url("ftp://h/").is_err());
        assert!(split_url("http://h:x/").is_err());
    }
}
