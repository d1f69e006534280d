//! Stack errors that say in words what failed and keep the error underneath
//! (a `rustls::Error`, a `quinn::ConnectionError`, a tungstenite error, an
//! OS error) as their [`source`](std::error::Error::source), so that a
//! postsocket [`Error`](crate::Error)'s source chain reaches it.

use std::error::Error;
use std::fmt;
use std::io;

/// A message, and the error it describes.
#[derive(Debug)]
struct Described {
    message: String,
    source: Box<dyn Error + Send + Sync + 'static>,
}

impl fmt::Display for Described {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl Error for Described {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&*self.source)
    }
}

/// `e`, said as `message` (which usually includes `e`'s own text), of the
/// same kind. An `io::Error` that wraps another error hands over that error
/// (`io::Error::source` would skip it); one from the OS stays itself, with
/// its code.
pub(crate) fn described(e: io::Error, message: String) -> io::Error {
    let kind = e.kind();
    let source = match e.get_ref() {
        Some(_) => e.into_inner().expect("checked"),
        None => Box::new(e),
    };
    io::Error::new(kind, Described { message, source })
}

/// An `io::Error` of `kind` said as `message`, whose source is `source`.
#[cfg_attr(not(feature = "quic"), allow(dead_code))] // QUIC's and WebTransport's
pub(crate) fn described_by(
    kind: io::ErrorKind,
    message: String,
    source: impl Error + Send + Sync + 'static,
) -> io::Error {
    io::Error::new(
        kind,
        Described {
            message,
            source: Box::new(source),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_inner_error_stays_reachable() {
        let inner = io::Error::new(io::ErrorKind::InvalidData, rustls::Error::DecryptError);
        let e = described(inner, "TLS handshake: decrypt error".into());
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert_eq!(e.to_string(), "TLS handshake: decrypt error");
        let src = e.get_ref().unwrap().source().unwrap();
        assert!(matches!(
            src.downcast_ref::<rustls::Error>(),
            Some(rustls::Error::DecryptError)
        ));
        let os = described(io::Error::from_raw_os_error(111), "connect: refused".into());
        let src = os.get_ref().unwrap().source().unwrap();
        assert_eq!(
            src.downcast_ref::<io::Error>().unwrap().raw_os_error(),
            Some(111)
        );
    }
}
