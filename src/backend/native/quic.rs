//! QUIC (RFC 9000) over quinn, mapped as draft-taps-quic-mapping says: a
//! Connection is one stream; the QUIC connection is the Connection Group, so
//! Clone opens a new stream without a new handshake; Messages with
//! msgReliable false go as RFC 9221 datagrams.

use crate::backend::{Incoming, Recv, SocketOptions};
use crate::capability::Capabilities;
use bytes::Bytes;
use futures::channel::mpsc::UnboundedSender;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

/// Read at most this much per stream read.
const READ_CHUNK: usize = 64 * 1024;

/// One QUIC stream (a Connection), with its QUIC connection (the group).
#[derive(Clone)]
pub(crate) struct QuicTransport {
    conn: quinn::Connection,
    send: Arc<futures::lock::Mutex<quinn::SendStream>>,
    recv: Arc<futures::lock::Mutex<quinn::RecvStream>>,
    /// The first stream of a connection also receives its datagrams.
    takes_datagrams: bool,
    /// A client keeps its endpoint (socket and driver) alive.
    _endpoint: Option<quinn::Endpoint>,
}

impl std::fmt::Debug for QuicTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuicTransport")
            .field("remote", &self.conn.remote_address())
            .field("connection", &self.conn.stable_id())
            .finish()
    }
}

fn other(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

impl QuicTransport {
    /// Connect (one racing attempt): ready after the QUIC handshake, with the first stream open.
    pub(crate) async fn connect(
        remote: SocketAddr,
        server_name: &str,
        tls: Arc<rustls::ClientConfig>,
        opts: &SocketOptions,
    ) -> io::Result<Self> {
        let bind = match opts.local {
            Some(l) => l,
            None if remote.is_ipv6() => "[::]:0".parse().expect("addr"),
            None => "0.0.0.0:0".parse().expect("addr"),
        };
        let endpoint = quinn::Endpoint::client(bind)?;
        let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls).map_err(other)?;
        let mut config = quinn::ClientConfig::new(Arc::new(crypto));
        config.transport_config(transport_config(opts));
        let conn = endpoint
            .connect_with(config, remote, server_name)
            .map_err(|e| other(format!("QUIC connect to {remote}: {e}")))?
            .await
            .map_err(|e| other(format!("QUIC handshake with {remote}: {e}")))?;
        let (send, recv) = conn.open_bi().await.map_err(other)?;
        Ok(QuicTransport::from_streams(
            conn,
            send,
            recv,
            true,
            Some(endpoint),
        ))
    }

    fn from_streams(
        conn: quinn::Connection,
        send: quinn::SendStream,
        recv: quinn::RecvStream,
        takes_datagrams: bool,
        endpoint: Option<quinn::Endpoint>,
    ) -> Self {
        QuicTransport {
            conn,
            send: Arc::new(futures::lock::Mutex::new(send)),
            recv: Arc::new(futures::lock::Mutex::new(recv)),
            takes_datagrams,
            _endpoint: endpoint,
        }
    }

    /// Clone: a new bidirectional stream on the same QUIC connection.
    pub(crate) async fn open_sibling(&self) -> io::Result<Self> {
        let (send, recv) = self.conn.open_bi().await.map_err(other)?;
        Ok(QuicTransport {
            conn: self.conn.clone(),
            send: Arc::new(futures::lock::Mutex::new(send)),
            recv: Arc::new(futures::lock::Mutex::new(recv)),
            takes_datagrams: false,
            _endpoint: self._endpoint.clone(),
        })
    }

    /// The QUIC connection's id, shared by every stream of the group.
    pub(crate) fn group_id(&self) -> usize {
        self.conn.stable_id()
    }

    pub(crate) fn remote(&self) -> SocketAddr {
        self.conn.remote_address()
    }

    pub(crate) fn local(&self) -> Option<SocketAddr> {
        self._endpoint.as_ref().and_then(|e| e.local_addr().ok())
    }

    /// Append stream bytes, or return one datagram (first stream only).
    pub(crate) async fn read(&self, buf: &mut Vec<u8>) -> io::Result<Recv> {
        let mut recv = self.recv.lock().await;
        let stream = recv.read_chunk(READ_CHUNK, true);
        let chunk = if self.takes_datagrams {
            let dgram = self.conn.read_datagram();
            futures::pin_mut!(stream, dgram);
            match futures::future::select(stream, dgram).await {
                futures::future::Either::Left((r, _)) => r,
                futures::future::Either::Right((d, _)) => {
                    return d.map(|b| Recv::Datagram(b.to_vec())).map_err(other)
                }
            }
        } else {
            stream.await
        };
        match chunk {
            Ok(Some(c)) => {
                buf.extend_from_slice(&c.bytes);
                Ok(Recv::Bytes)
            }
            Ok(None) => Ok(Recv::Eof),
            Err(quinn::ReadError::Reset(code)) => Err(io::Error::new(
                io::ErrorKind::ConnectionReset,
                format!("the peer reset the QUIC stream (code {code})"),
            )),
            Err(e) => Err(other(e)),
        }
    }

    pub(crate) async fn write_vectored(&self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        let mut send = self.send.lock().await;
        // quinn copies into its own buffers; write the slices in turn and
        // report what was taken (the caller resumes at the right offset).
        let mut total = 0;
        for b in bufs {
            if b.is_empty() {
                continue;
            }
            let n = send.write(b).await.map_err(other)?;
            total += n;
            if n < b.len() {
                break;
            }
        }
        Ok(total)
    }

    pub(crate) async fn send_datagram(&self, data: &[u8]) -> io::Result<()> {
        self.conn
            .send_datagram(Bytes::copy_from_slice(data))
            .map_err(|e| other(format!("QUIC datagram: {e}")))
    }

    /// Finish the stream (FIN).
    pub(crate) fn shutdown_write(&self) -> io::Result<()> {
        match self.send.try_lock() {
            Some(mut s) => match s.finish() {
                Ok(()) => Ok(()),
                Err(quinn::ClosedStream { .. }) => Ok(()),
            },
            None => Err(other("the QUIC stream is busy sending")),
        }
    }

    /// Reset the stream in both directions (RESET_STREAM, STOP_SENDING).
    pub(crate) fn abort(&self) {
        if let Some(mut s) = self.send.try_lock() {
            let _ = s.reset(0u32.into());
        }
        if let Some(mut r) = self.recv.try_lock() {
            let _ = r.stop(0u32.into());
        }
    }

    /// CloseGroup / AbortGroup: close the whole QUIC connection.
    pub(crate) fn close_connection(&self, abort: bool) {
        let (code, why): (u32, &[u8]) = if abort {
            (1, b"AbortGroup")
        } else {
            (0, b"CloseGroup")
        };
        self.conn.close(code.into(), why);
    }

    /// Largest datagram payload now, if datagrams are enabled.
    pub(crate) fn max_datagram(&self) -> Option<u64> {
        self.conn.max_datagram_size().map(|n| n as u64)
    }
}

fn transport_config(opts: &SocketOptions) -> Arc<quinn::TransportConfig> {
    let mut t = quinn::TransportConfig::default();
    if let Some(idle) = opts.keep_alive {
        t.keep_alive_interval(Some(idle.unwrap_or(std::time::Duration::from_secs(15))));
    }
    if let Some(timeout) = opts.user_timeout {
        if let Ok(v) = quinn::IdleTimeout::try_from(timeout) {
            t.max_idle_timeout(Some(v));
        }
    }
    Arc::new(t)
}

/// Listen for QUIC on `addr`: every stream a peer opens becomes an Incoming
/// Connection, grouped by its QUIC connection.
pub(crate) fn listen(
    addr: SocketAddr,
    tls: Arc<rustls::ServerConfig>,
    opts: &SocketOptions,
    tx: UnboundedSender<io::Result<Incoming>>,
) -> io::Result<(SocketAddr, tokio::task::AbortHandle)> {
    let endpoint = quinn::Endpoint::server(server_config(tls, opts)?, addr)?;
    serve(endpoint, tx)
}

/// A Listener's QUIC server configuration.
pub(crate) fn server_config(
    tls: Arc<rustls::ServerConfig>,
    opts: &SocketOptions,
) -> io::Result<quinn::ServerConfig> {
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls).map_err(other)?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    config.transport_config(transport_config(opts));
    Ok(config)
}

/// Accept on a server `endpoint` (its own socket, or one shared with plain
/// UDP by `demux.rs`): every stream a peer opens becomes an Incoming
/// Connection, grouped by its QUIC connection.
pub(crate) fn serve(
    endpoint: quinn::Endpoint,
    tx: UnboundedSender<io::Result<Incoming>>,
) -> io::Result<(SocketAddr, tokio::task::AbortHandle)> {
    let local = endpoint.local_addr()?;
    let task = tokio::spawn(async move {
        while let Some(incoming) = endpoint.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let remote = incoming.remote_address();
                let conn = match incoming.await {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = tx.unbounded_send(Err(other(format!(
                            "QUIC handshake from {remote}: {e}"
                        ))));
                        return;
                    }
                };
                let mut first = true;
                loop {
                    let (send, recv) = match conn.accept_bi().await {
                        Ok(s) => s,
                        Err(_) => return, // the connection ended
                    };
                    let transport =
                        QuicTransport::from_streams(conn.clone(), send, recv, first, None);
                    first = false;
                    let group = Some(transport.group_id());
                    let item = Incoming {
                        transport: super::Transport::Quic(transport),
                        caps: &Capabilities::QUIC,
                        remote,
                        group,
                    };
                    if tx.unbounded_send(Ok(item)).is_err() {
                        return;
                    }
                }
            });
        }
    });
    Ok((local, task.abort_handle()))
}

#[cfg(test)]
mod tests {
    //! The QUIC stack on real loopback handshakes, below the Connection layer.
    use super::*;
    use futures::StreamExt;

    fn configs() -> (Arc<rustls::ServerConfig>, Arc<rustls::ClientConfig>) {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let cert = ck.cert.der().clone();
        let key = rustls::pki_types::PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der());
        let mut server = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.clone()], key.into())
            .unwrap();
        server.alpn_protocols = vec![b"taps".to_vec()];
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert).unwrap();
        let mut client = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        client.alpn_protocols = vec![b"taps".to_vec()];
        (Arc::new(server), Arc::new(client))
    }

    async fn read_exact(t: &QuicTransport, n: usize) -> Vec<u8> {
        let mut buf = Vec::new();
        while buf.len() < n {
            match t.read(&mut buf).await.unwrap() {
                Recv::Bytes => {}
                other => panic!("expected stream bytes, got {other:?}"),
            }
        }
        buf
    }

    #[tokio::test]
    async fn streams_datagrams_and_siblings_share_one_connection() {
        let (server_tls, client_tls) = configs();
        let (tx, mut rx) = futures::channel::mpsc::unbounded();
        let opts = SocketOptions::default();
        let (addr, stop) = listen("127.0.0.1:0".parse().unwrap(), server_tls, &opts, tx).unwrap();
        let client = QuicTransport::connect(addr, "localhost", client_tls, &opts)
            .await
            .unwrap();
        client
            .write_vectored(&[io::IoSlice::new(b"he"), io::IoSlice::new(b"llo")])
            .await
            .unwrap();
        let first = rx.next().await.unwrap().unwrap();
        let super::super::Transport::Quic(server) = first.transport else {
            panic!("quic")
        };
        assert_eq!(read_exact(&server, 5).await, b"hello");
        assert_eq!(first.group, Some(server.group_id()));
        // A datagram reaches the first stream's reader.
        assert!(client.max_datagram().unwrap() > 1000);
        client.send_datagram(b"unreliable").await.unwrap();
        let mut buf = Vec::new();
        match server.read(&mut buf).await.unwrap() {
            Recv::Datagram(d) => assert_eq!(d, b"unreliable"),
            other => panic!("expected a datagram, got {other:?}"),
        }
        // A sibling stream is a second Incoming in the same group, no new handshake.
        let sibling = client.open_sibling().await.unwrap();
        sibling
            .write_vectored(&[io::IoSlice::new(b"second")])
            .await
            .unwrap();
        let second = rx.next().await.unwrap().unwrap();
        assert_eq!(second.group, first.group);
        let super::super::Transport::Quic(server2) = second.transport else {
            panic!("quic")
        };
        assert_eq!(read_exact(&server2, 6).await, b"second");
        // FIN ends the stream.
        sibling.shutdown_write().unwrap();
        let mut rest = Vec::new();
        assert!(matches!(server2.read(&mut rest).await.unwrap(), Recv::Eof));
        client.close_connection(false);
        stop.abort();
    }
}
