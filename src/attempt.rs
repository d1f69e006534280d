//! One connection attempt (RFC 9623 §4.2.1): the socket options a
//! candidate's stack gets from the properties, opening the stack, and the
//! framers' start and handshake on it; and Clone's reopening of a winner
//! the same way.
//!
//! Below both `establish`, which races attempts, and `connection`, whose
//! Clone and SetProperty use it; it imports neither.

use crate::backend::StackInstance;
use crate::backend::{self, Recv, SocketOptions, Transport};
use crate::capability::{Capabilities, DataUnit};
use crate::error::{Error, ErrorReason, Source};
use crate::framer::{FramerStack, Start};
use crate::properties::{ConnectionProperties, Preference, SelectionProperty, TransportProperties};
use crate::racing::Target;
use std::net::SocketAddr;
use std::sync::Arc;

/// What Clone needs to open another connection like the winner.
#[derive(Clone, Debug)]
pub(crate) struct Reconnect {
    pub(crate) caps: Capabilities,
    pub(crate) remote: Target,
    pub(crate) opts: SocketOptions,
}

/// Socket options from the properties.
pub(crate) fn socket_options(
    props: &TransportProperties,
    conn: &ConnectionProperties,
    local: Option<SocketAddr>,
    interface: Option<String>,
) -> SocketOptions {
    let keep_alive = match props.get(SelectionProperty::KeepAlive) {
        Preference::Require | Preference::Prefer => Some(conn.keep_alive_timeout),
        _ if conn.keep_alive_timeout.is_some() => Some(conn.keep_alive_timeout),
        _ => None,
    };
    let user_timeout = if conn.tcp.user_timeout_enabled {
        conn.tcp.user_timeout_value.or(conn.conn_timeout)
    } else {
        conn.conn_timeout
    };
    SocketOptions {
        local,
        interface,
        keep_alive,
        user_timeout,
        dscp: conn.conn_capacity_profile.dscp(),
        security: None,
        server_name: None,
        early_data: None,
        direction: props.direction,
        protocol_options: props.protocol_options.clone(),
        session_scope: Default::default(),
        limits: Default::default(),
    }
}

/// Apply the options that can change on an open socket.
pub(crate) fn apply_live_options(t: &Transport, opts: &SocketOptions) {
    let _ = t.set_dscp(opts.dscp);
    backend::apply_live_options(t, opts);
}

/// Why an attempt failed: the reason, in words, and the stack's own error
/// (the source of the candidate's failure) where there is one.
pub(crate) type AttemptError = (ErrorReason, String, Option<Source>);

/// One attempt: open the stack, then run the framers' start and handshake.
/// A framer failure fails the candidate, so racing moves on.
pub(crate) async fn attempt(
    caps: Capabilities,
    remote: Target,
    opts: SocketOptions,
    framers: FramerStack,
) -> Result<(Transport, FramerStack, Vec<u8>), AttemptError> {
    attempt_to(caps, &remote, &opts, framers).await
}

/// [`attempt`] with what a Clone of its Connection needs, which it reads
/// in place and hands back with its result: the driver keeps no copy of
/// the options while it runs.
pub(crate) async fn attempt_keeping(
    rc: Box<Reconnect>,
    framers: FramerStack,
) -> (
    Result<(Transport, FramerStack, Vec<u8>), AttemptError>,
    Option<Box<Reconnect>>,
) {
    let r = attempt_to(rc.caps, &rc.remote, &rc.opts, framers).await;
    (r, Some(rc))
}

/// [`attempt`], reading the target and the options where they are.
async fn attempt_to(
    caps: Capabilities,
    remote: &Target,
    opts: &SocketOptions,
    mut framers: FramerStack,
) -> Result<(Transport, FramerStack, Vec<u8>), AttemptError> {
    let t = backend::connect(caps.stack, remote, opts)
        .await
        .map_err(|e| {
            let text = e.to_string();
            (
                ErrorReason::EstablishmentFailed,
                text,
                Some(Arc::new(e) as Source),
            )
        })?;
    let leftover = framer_start(&t, &caps, &mut framers)
        .await
        .map_err(|m| (ErrorReason::ProtocolFailed, m, None))?;
    Ok((t, framers, leftover))
}

/// A framer handshake that has read this much without finishing fails.
const MAX_HANDSHAKE: usize = 64 * 1024;

/// Run `start` and `handshake` of every framer (bottom first). Returns bytes
/// received beyond the handshake.
pub(crate) async fn framer_start(
    t: &Transport,
    caps: &Capabilities,
    framers: &mut FramerStack,
) -> Result<Vec<u8>, String> {
    let mut buf = bytes::BytesMut::new();
    for f in framers.framers.iter_mut() {
        let (bytes, wait) = match f
            .start()
            .map_err(|e| format!("framer `{}`: {e}", f.name()))?
        {
            Start::Ready(b) => (b, false),
            Start::AwaitHandshake(b) => (b, true),
        };
        if !bytes.is_empty() {
            let write: crate::runtime::BoxFuture<'_, _> = Box::pin(write_all(t, caps, &bytes));
            write
                .await
                .map_err(|e| format!("framer `{}` start: {e}", f.name()))?;
        }
        if !wait {
            continue;
        }
        loop {
            if let Some(n) = f
                .handshake(&buf)
                .map_err(|e| format!("framer `{}` handshake: {e}", f.name()))?
            {
                let n = n.min(buf.len());
                bytes::Buf::advance(&mut buf, n);
                break;
            }
            if buf.len() > MAX_HANDSHAKE {
                return Err(format!(
                    "framer `{}` handshake: no result after {} bytes",
                    f.name(),
                    buf.len()
                ));
            }
            // Boxed: one copy of the stack's read in the program, not one
            // inlined here too (the browser's .wasm size).
            let read: crate::runtime::BoxFuture<'_, _> = Box::pin(t.read(&mut buf));
            match read.await {
                Ok(Recv::Bytes) => {}
                Ok(Recv::Datagram(d)) => buf.extend_from_slice(&d),
                Ok(Recv::Eof) => {
                    return Err(format!(
                        "framer `{}` handshake: the peer closed the connection",
                        f.name()
                    ))
                }
                Err(e) => return Err(format!("framer `{}` handshake: {e}", f.name())),
            }
        }
    }
    Ok(buf.into())
}

async fn write_all(t: &Transport, caps: &Capabilities, mut data: &[u8]) -> std::io::Result<()> {
    if caps.data_unit == DataUnit::Message {
        return t.send_datagram(data).await;
    }
    while !data.is_empty() {
        let n = t.write_vectored(&[std::io::IoSlice::new(data)]).await?;
        data = &data[n..];
    }
    Ok(())
}

/// Open another connection like an earlier winner (Clone): the stack, its
/// framers after their handshake, the bytes read beyond it, and what a
/// Clone of the new one needs.
pub(crate) async fn reopen(
    rc: &Reconnect,
    props: &TransportProperties,
    framers: FramerStack,
) -> Result<(Transport, FramerStack, Vec<u8>, Reconnect), Error> {
    let mut opts = socket_options(
        props,
        &props.connection,
        rc.opts.local.map(|a| SocketAddr::new(a.ip(), 0)),
        rc.opts.interface.clone(),
    );
    opts.security = rc.opts.security.clone();
    opts.server_name = rc.opts.server_name.clone();
    // The Clone's TLS sessions are the original's: its TransportContext's,
    // or none under isolateSession.
    opts.session_scope = rc.opts.session_scope;
    let (transport, framers, leftover) = attempt(rc.caps, rc.remote.clone(), opts.clone(), framers)
        .await
        .map_err(|(reason, m, source)| {
            let e = Error::new(reason, format!("Clone to {}: {m}", rc.remote));
            match source {
                Some(s) => e.with_shared_source(s),
                None => e,
            }
        })?;
    let again = Reconnect {
        caps: rc.caps,
        remote: rc.remote.clone(),
        opts,
    };
    Ok((transport, framers, leftover, again))
}
