//! The Listener (RFC 9622 §7.2): accepts Connections on every eligible stack.

mod limits;
pub use limits::ListenerLimits;

use crate::backend::StackInstance;
use crate::backend::{BackendListener, Incoming};
use crate::capability::{Capabilities, StackId};
use crate::connection::{Connection, Parts};
use crate::endpoint::RemoteEndpoint;
use crate::error::{Error, ErrorReason};
use crate::establish::Snapshot;
use crate::event::ListenerEvent;
use crate::security::SecurityParameters;
use futures::stream::FuturesUnordered;
use futures::StreamExt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;

/// A Listener: yields a Connection for each peer (TCP: each handshake; UDP:
/// each new 4-tuple's first datagram).
///
/// # Bounds (native)
/// Set with [`Preconnection::set_listener_limits`] ([`ListenerLimits`],
/// whose docs give each default). By default at most 256 incoming
/// connections are pending at once: being accepted or handshaking in the
/// stack (TLS, WebSocket, a QUIC or WebTransport handshake), or waiting for
/// the application to take them. Past that the Listener stops accepting: TCP
/// peers wait in the kernel's backlog, QUIC Initials in quinn's queue, and
/// datagrams from new UDP sources are refused. Every step of an incoming
/// connection's establishment is bounded by the handshake timeout (10 s, or
/// connTimeout), and framer handshakes run side by side, at most 256 at
/// once. Past 64 QUIC handshakes from unvalidated addresses, Initials are
/// answered with a Retry.
///
/// A UDP Listener keeps at most 1,024 flows (remote addresses) at once, a
/// flow ending when its Connection, or the ConnectionReceived not yet taken,
/// is dropped; datagrams from new sources are refused while it is full. All
/// its flows together keep at most 4 MiB of datagrams waiting for their
/// readers (1,024 datagrams per flow), as one socket's receive buffer does;
/// past it, datagrams are dropped. Refusals and drops are reported as
/// EstablishmentError events: the first of a run at once, the count when
/// datagrams are taken again. `stop` leaves the flows already handed out
/// working.
///
/// [`Preconnection::set_listener_limits`]: crate::Preconnection::set_listener_limits
pub struct Listener {
    backend: futures::lock::Mutex<BackendListener>,
    /// Shared with the handshakes of incoming connections.
    snap: std::sync::Arc<Snapshot>,
    /// The LocalEndpoint of every Connection it gives, shared by them.
    conn_local: Option<std::sync::Arc<crate::endpoint::LocalEndpoint>>,
    /// Set while the limit is 0: the stacks refuse new peers before any
    /// handshake.
    refusing: std::sync::Arc<std::sync::atomic::AtomicBool>,
    limit: Mutex<Option<u64>>,
    stopped: Mutex<bool>,
    /// Fired by `stop`, so a pending `accept` ends at once.
    stop_tx: Mutex<Option<futures::channel::oneshot::Sender<()>>>,
    stop_rx: futures::future::Shared<futures::channel::oneshot::Receiver<()>>,
    local: SocketAddr,
    groups: Mutex<Groups>,
    /// Framer handshakes of incoming connections, run side by side (a
    /// silent peer holds only its own), at most
    /// `limits.concurrent_handshakes()` at once.
    handshakes: futures::lock::Mutex<FuturesUnordered<Handshake>>,
    /// Its bounds, the handshake timeout already connTimeout when set.
    limits: ListenerLimits,
}

/// The groups of the Connections a Listener received (streams of one QUIC
/// connection join one group), by the stack's group key.
#[derive(Default)]
struct Groups {
    map: std::collections::HashMap<usize, std::sync::Weak<crate::connection::Group>>,
    /// Forget the ended groups once the map has this many entries: twice
    /// what was left after the last sweep, so that accepting N Connections
    /// costs O(N), not a scan of the map each.
    sweep_at: usize,
}

impl Groups {
    fn sweep(&mut self) {
        if self.map.len() >= self.sweep_at {
            self.map.retain(|_, g| g.strong_count() > 0);
            self.sweep_at = (2 * self.map.len()).max(64);
        }
    }
}

/// One incoming connection's framer handshake: its parts, and its group key.
type Handshake = crate::runtime::BoxFuture<'static, (Result<Parts, Error>, Option<usize>)>;

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener")
            .field("local", &self.local)
            .finish()
    }
}

/// The stacks a Listener binds, in rank order: every selected stack it can
/// serve. Stacks that share a transport port share one socket and are told
/// apart per peer (TLS or plain TCP by the first bytes, QUIC or plain UDP by
/// the first datagram; see `backend/native/stream_port.rs` and `datagram_port.rs`). TLS and QUIC need a
/// server certificate: without one they are left out, which is an error only
/// if nothing is left (e.g. opportunistic security without a certificate
/// listens on plain TCP and UDP).
fn listen_stacks(
    chosen: &[Capabilities],
    security: &SecurityParameters,
) -> Result<Vec<StackId>, Error> {
    let mut out: Vec<StackId> = Vec::new();
    let mut left_out: Vec<String> = Vec::new();
    for c in chosen {
        // Every TLS-secured stack (TLS, QUIC, wss, WebTransport) needs one.
        if c.security == crate::capability::SecurityProtocol::Tls
            && security.server_certificate.is_empty()
        {
            left_out.push(c.stack.to_string());
            continue;
        }
        if !out.contains(&c.stack) {
            out.push(c.stack);
        }
    }
    if out.is_empty() {
        return Err(Error::invalid_configuration(format!(
            "a TLS Listener needs SecurityParameters::server_certificate (an Identity with the certificate chain and private key); without one, {} cannot listen and no other stack is selected",
            left_out.join(" and ")
        )));
    }
    Ok(out)
}

impl Listener {
    pub(crate) async fn bind(snap: Snapshot, limits: ListenerLimits) -> Result<Listener, Error> {
        limits.check()?;
        let local = snap.locals.first().ok_or_else(|| {
            Error::invalid_configuration("Listen needs a LocalEndpoint (RFC 9622 §7.2)")
        })?;
        let ip: IpAddr = match (local.ip_address(), local.host_name()) {
            (Some(ip), _) => ip,
            (None, Some("localhost")) => IpAddr::from([127, 0, 0, 1]),
            (None, Some(h)) => {
                return Err(Error::invalid_configuration(format!(
                    "listen on an IP address, not the name {h}"
                )))
            }
            (None, None) => IpAddr::from([0u8; 16]),
        };
        let port = local.port().unwrap_or(0);
        if snap.security.require_client_certificate
            && snap.security.mode() != crate::security::SecurityMode::Required
        {
            // Plain TCP would take a client with no certificate at all.
            return Err(Error::invalid_configuration(format!(
                "require_client_certificate contradicts {} security, which lets clients in \
                 over plaintext stacks without any certificate: use SecurityParameters::new() \
                 to require secure, certified clients",
                match snap.security.mode() {
                    crate::security::SecurityMode::Disabled => "disabled",
                    _ => "opportunistic",
                }
            )));
        }
        let props = snap.props.for_listener();
        let chosen = crate::racing::selection::select(
            crate::backend::registry(),
            &props,
            &snap.security,
            snap.framers.frames_messages(&props),
            snap.protocols.as_deref(),
        )?;
        let stacks = listen_stacks(&chosen, &snap.security)?;
        let mut opts = crate::attempt::socket_options(
            &props,
            &props.connection,
            None,
            local.interface().map(str::to_string),
        );
        opts.security = Some(snap.security.clone());
        let limits = limits.with_conn_timeout(props.connection.conn_timeout);
        opts.limits = limits.clone();
        let backend = BackendListener::bind(&stacks, SocketAddr::new(ip, port), &opts)
            .await
            .map_err(|e| {
                Error::new(
                    ErrorReason::EstablishmentFailed,
                    format!("cannot listen on {ip}:{port}: {e}"),
                )
            })?;
        let local = backend.local_addr();
        let (stop_tx, stop_rx) = futures::channel::oneshot::channel();
        // The Listener's properties, shared by its Connections (the
        // handshake hands each one this Arc).
        let props = std::sync::Arc::new(props);
        Ok(Listener {
            refusing: backend.refusal(),
            backend: futures::lock::Mutex::new(backend),
            conn_local: snap.locals.first().cloned().map(std::sync::Arc::new),
            snap: std::sync::Arc::new(Snapshot {
                config: std::sync::Arc::new(crate::establish::Config {
                    props,
                    ..crate::establish::Config::clone(&snap.config)
                }),
                // Not the Preconnection's: these properties are the Listener's.
                selection: Default::default(),
                ..snap
            }),
            limit: Mutex::new(None),
            stopped: Mutex::new(false),
            stop_tx: Mutex::new(Some(stop_tx)),
            stop_rx: futures::FutureExt::shared(stop_rx),
            local,
            groups: Mutex::new(Groups::default()),
            handshakes: Default::default(),
            limits,
        })
    }

    /// A Listener over the stack instances a peer opens on an existing
    /// connection (a WebRTC peer's further data channels, Rendezvous): they
    /// join `group`.
    pub(crate) fn for_incoming(
        backend: BackendListener,
        snap: Snapshot,
        group: std::sync::Arc<crate::connection::Group>,
    ) -> Listener {
        let (stop_tx, stop_rx) = futures::channel::oneshot::channel();
        let local = backend.local_addr();
        let limits =
            ListenerLimits::default().with_conn_timeout(snap.props.connection.conn_timeout);
        let mut groups = Groups::default();
        groups.map.insert(0, std::sync::Arc::downgrade(&group));
        Listener {
            refusing: backend.refusal(),
            backend: futures::lock::Mutex::new(backend),
            conn_local: snap.locals.first().cloned().map(std::sync::Arc::new),
            snap: std::sync::Arc::new(snap),
            limit: Mutex::new(None),
            stopped: Mutex::new(false),
            stop_tx: Mutex::new(Some(stop_tx)),
            stop_rx: futures::FutureExt::shared(stop_rx),
            local,
            groups: Mutex::new(groups),
            handshakes: Default::default(),
            limits,
        }
    }

    /// The bounds this Listener keeps ([`ListenerLimits`]), with connTimeout
    /// as the handshake timeout when it is set.
    pub fn limits(&self) -> &ListenerLimits {
        &self.limits
    }

    /// The address the Listener is bound to (the port, if 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// `SetNewConnectionLimit(n)`: deliver at most `n` more Connections
    /// (`None` = Infinite, the default). Peers over the limit are refused
    /// (TCP: reset at once; UDP: their datagrams are not delivered). While
    /// the limit is 0 they are refused before any handshake (TLS, WebSocket,
    /// QUIC: CONNECTION_REFUSED), so a flood costs the Listener nothing.
    pub fn set_new_connection_limit(&self, limit: Option<u64>) {
        *self.limit.lock().unwrap() = limit;
        self.refusing
            .store(limit == Some(0), std::sync::atomic::Ordering::Relaxed);
    }

    /// `Stop()`: stop listening. Pending and later `accept` calls return
    /// `Stopped`; Connections already received are unaffected.
    pub fn stop(&self) {
        *self.stopped.lock().unwrap() = true;
        if let Some(tx) = self.stop_tx.lock().unwrap().take() {
            let _ = tx.send(());
        }
        if let Some(mut b) = self.backend.try_lock() {
            b.stop();
        }
    }

    /// The next Listener event: ConnectionReceived, an EstablishmentError for
    /// an incoming connection that failed, or Stopped (the last one).
    ///
    /// Incoming connections run their framers' handshakes side by side, at
    /// most [`ListenerLimits::concurrent_handshakes`] at once, each bounded by
    /// the handshake timeout: a peer that stays silent delays no other.
    pub async fn next_event(&self) -> ListenerEvent {
        enum Next {
            Stop,
            Incoming(Option<std::io::Result<Incoming>>),
            Ready(Box<(Result<Parts, Error>, Option<usize>)>),
        }
        loop {
            if *self.stopped.lock().unwrap() {
                self.backend.lock().await.stop();
                return ListenerEvent::Stopped;
            }
            let next = {
                let mut backend = self.backend.lock().await;
                let mut handshakes = self.handshakes.lock().await;
                let room = handshakes.len() < self.limits.concurrent_handshakes();
                let mut stop = self.stop_rx.clone();
                let mut accept = std::pin::pin!(backend.accept());
                std::future::poll_fn(|cx| {
                    use std::future::Future;
                    use std::task::Poll;
                    if std::pin::Pin::new(&mut stop).poll(cx).is_ready() {
                        return Poll::Ready(Next::Stop);
                    }
                    if let Poll::Ready(Some(done)) = handshakes.poll_next_unpin(cx) {
                        return Poll::Ready(Next::Ready(Box::new(done)));
                    }
                    if room {
                        if let Poll::Ready(item) = accept.as_mut().poll(cx) {
                            return Poll::Ready(Next::Incoming(item));
                        }
                    }
                    Poll::Pending
                })
                .await
            };
            let incoming = match next {
                Next::Stop => {
                    self.backend.lock().await.stop();
                    return ListenerEvent::Stopped;
                }
                Next::Ready(done) => {
                    let (parts, group) = *done;
                    return match parts {
                        Ok(parts) => ListenerEvent::ConnectionReceived(self.finish(parts, group)),
                        Err(e) => ListenerEvent::EstablishmentError(e),
                    };
                }
                Next::Incoming(None) => return ListenerEvent::Stopped,
                Next::Incoming(Some(Err(e))) => {
                    return ListenerEvent::EstablishmentError(Error::new(
                        ErrorReason::EstablishmentFailed,
                        format!("accepting on {}: {e}", self.local),
                    ))
                }
                Next::Incoming(Some(Ok(i))) => i,
            };
            {
                let mut limit = self.limit.lock().unwrap();
                match *limit {
                    Some(0) => {
                        incoming.transport.abort();
                        continue;
                    }
                    Some(n) => {
                        *limit = Some(n - 1);
                        if n == 1 {
                            self.refusing
                                .store(true, std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                    None => {}
                }
            }
            let group = incoming.group;
            let handshake = Self::handshake(
                incoming,
                self.snap.clone(),
                self.conn_local.clone(),
                self.limits.handshake_timeout(),
            );
            self.handshakes
                .lock()
                .await
                .push(Box::pin(async move { (handshake.await, group) }));
        }
    }

    /// The Listener's events as a `Stream`: every [`next_event`](Self::next_event),
    /// `Stopped` last, then the end.
    pub fn events(&self) -> impl futures::Stream<Item = ListenerEvent> + '_ {
        futures::stream::unfold(false, move |stopped| async move {
            if stopped {
                return None;
            }
            let event = self.next_event().await;
            let stopped = matches!(event, ListenerEvent::Stopped);
            Some((event, stopped))
        })
    }

    /// Incoming Connections as a `Stream`: each ConnectionReceived as `Ok`,
    /// each EstablishmentError (a peer whose handshake failed, a refusal, an
    /// accept error) as `Err`, surfaced rather than skipped; it ends once
    /// the Listener stopped.
    pub fn incoming(&self) -> impl futures::Stream<Item = Result<Connection, Error>> + '_ {
        futures::StreamExt::filter_map(self.events(), |event| async move {
            match event {
                ListenerEvent::ConnectionReceived(c) => Some(Ok(c)),
                ListenerEvent::EstablishmentError(e) => Some(Err(e)),
                ListenerEvent::Stopped => None,
            }
        })
    }

    /// The next Connection (`ConnectionReceived`); an error once the Listener
    /// stopped. Incoming connections whose framer handshake failed are
    /// skipped: [`incoming`](Self::incoming) surfaces them.
    pub async fn accept(&self) -> Result<Connection, Error> {
        loop {
            match self.next_event().await {
                ListenerEvent::ConnectionReceived(c) => return Ok(c),
                ListenerEvent::EstablishmentError(_) => continue,
                ListenerEvent::Stopped => {
                    return Err(Error::new(
                        ErrorReason::ConnectionAborted,
                        "the Listener is stopped",
                    ))
                }
            }
        }
    }

    /// Run the framers' start and handshake of an incoming connection,
    /// bounded by `limit` (the handshake timeout): its parts.
    async fn handshake(
        incoming: Incoming,
        snap: std::sync::Arc<Snapshot>,
        local: Option<std::sync::Arc<crate::endpoint::LocalEndpoint>>,
        limit: std::time::Duration,
    ) -> Result<Parts, Error> {
        let Incoming {
            transport,
            caps,
            remote,
            group: _,
            // Its place among the pending connections is given back when its
            // handshake is done (or failed).
            room: _room,
        } = incoming;
        let caps =
            crate::racing::selection::effective(caps, snap.framers.frames_messages(&snap.props));
        let mut framers = snap.framers.for_data_unit(caps.data_unit, &snap.props);
        let started = {
            let start = crate::attempt::framer_start(&transport, &caps, &mut framers);
            let timer = crate::runtime::sleep(limit);
            futures::pin_mut!(start, timer);
            match futures::future::select(start, timer).await {
                futures::future::Either::Left((r, _)) => Some(r),
                futures::future::Either::Right(_) => None,
            }
        };
        let leftover = match started {
            Some(r) => r.map_err(|m| {
                Error::new(ErrorReason::ProtocolFailed, format!("from {remote}: {m}"))
            })?,
            None => {
                transport.abort();
                return Err(Error::new(
                    ErrorReason::Timeout,
                    format!(
                        "from {remote}: the framers' handshake did not finish within {}",
                        crate::runtime::ms_text(limit)
                    ),
                ));
            }
        };
        let transport_early = transport.early_data();
        Ok(Parts {
            transport,
            caps,
            framers,
            leftover,
            props: snap.props.clone(),
            trace: Default::default(),
            remote: RemoteEndpoint::new().with_socket_addr(remote)?,
            remote_addr: Some(remote),
            local,
            reconnect: None,
            early_sent: false,
            peer_early_data: transport_early,
        })
    }

    /// The Connection of an incoming connection whose handshake is done;
    /// streams of one QUIC connection join one group (RFC 9622 §7.4).
    fn finish(&self, parts: Parts, group: Option<usize>) -> Connection {
        let Some(key) = group else {
            return Connection::from_parts(parts, None);
        };
        let mut groups = self.groups.lock().unwrap();
        groups.sweep();
        let existing = groups.map.get(&key).and_then(std::sync::Weak::upgrade);
        let conn = Connection::from_parts(parts, existing);
        groups
            .map
            .insert(key, std::sync::Arc::downgrade(&conn.group()));
        conn
    }
}

#[cfg(test)]
mod tests {
    use super::Groups;

    /// Ended groups are forgotten in sweeps whose cost is spread over the
    /// inserts (not a scan of the map per accepted Connection).
    #[test]
    fn ended_groups_are_swept_now_and_then() {
        let mut g = Groups::default();
        for key in 0..200 {
            g.sweep();
            // Each group ended at once (no Connection holds it).
            g.map.insert(key, std::sync::Weak::new());
        }
        assert!(g.map.len() < 64 + 1, "{} entries kept", g.map.len());
        assert_eq!(g.sweep_at, 64);
    }
}
