//! A minimal HTTP/1.1 POST for signaling (`rendezvous::HttpSignaling`):
//! `http://` URLs only, one request per TCP connection, bounded in size and time.

use std::io;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Largest response accepted (an SDP answer is a few KB).
const MAX_RESPONSE: usize = 1 << 20;
/// The whole exchange must finish within this time.
const TIMEOUT: Duration = Duration::from_secs(10);

/// Split `http://host:port/path` into (host, port, path).
pub(crate) fn split_url(url: &str) -> io::Result<(String, u16, String)> {
    let bad = |why: &str| io::Error::new(io::ErrorKind::InvalidInput, format!("URL {url}: {why}"));
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| bad("natively only http:// signaling URLs are supported"))?;
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
        None => 80,
    };
    if host.is_empty() {
        return Err(bad("no host"));
    }
    Ok((host, port, path.to_string()))
}

/// POST `body` as JSON to `url` and return the response body (status 200 only).
pub(crate) async fn http_post_json(url: &str, body: String) -> io::Result<String> {
    tokio::time::timeout(TIMEOUT, post(url, body))
        .await
        .map_err(|_| {
            io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no answer within {TIMEOUT:?}"),
            )
        })?
}

async fn post(url: &str, body: String) -> io::Result<String> {
    let (host, port, path) = split_url(url)?;
    let mut stream = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
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

    #[test]
    fn urls() {
        assert_eq!(
            split_url("http://127.0.0.1:8080/offer").unwrap(),
            ("127.0.0.1".into(), 8080, "/offer".into())
        );
        assert_eq!(
            split_url("http://[::1]:9/x").unwrap(),
            ("::1".into(), 9, "/x".into())
        );
        assert_eq!(split_url("http://h").unwrap(), ("h".into(), 80, "/".into()));
        assert!(split_url("https://h/").is_err());
        assert!(split_url("http://h:x/").is_err());
    }
}
