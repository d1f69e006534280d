//! Connection Groups (RFC 9622 §7.4): Clone, the group's entangled
//! properties, GroupedConnections, CloseGroup and AbortGroup.

#![allow(clippy::result_large_err)]

use super::*;
use crate::backend::StackInstance;

pub(crate) struct Group {
    /// Inline for one: most Connections are never cloned, and their group
    /// then costs no allocation beyond its own.
    pub(super) members: Mutex<smallvec::SmallVec<[Weak<Inner>; 1]>>,
    /// Entangled Connection Properties (all but connPriority).
    pub(super) props: Mutex<ConnectionProperties>,
}

impl Inner {
    /// Its group, made now (with it as the only member, and the properties
    /// it was made with) if it has none yet.
    // In the browser, Inner (a member) is not Send: see `Connection::from_parts`.
    #[allow(clippy::arc_with_non_send_sync)]
    pub(super) fn group(self: &Arc<Self>) -> &Arc<Group> {
        self.group.get_or_init(|| {
            Arc::new(Group {
                members: Mutex::new(smallvec::smallvec![Arc::downgrade(self)]),
                props: Mutex::new(self.props.connection.clone()),
            })
        })
    }
}

impl Connection {
    /// Its group, made now if it has none yet.
    pub(crate) fn group(&self) -> Arc<Group> {
        Inner::group(&self.inner).clone()
    }

    pub(super) fn members(&self) -> Vec<Arc<Inner>> {
        let Some(group) = self.inner.group.get() else {
            return vec![self.inner.clone()];
        };
        let members = group.members.lock().unwrap();
        members.iter().filter_map(Weak::upgrade).collect()
    }

    pub(super) fn grouped_count(&self) -> usize {
        self.members()
            .iter()
            .filter(|m| m.status.lock().unwrap().state != ConnState::Closed)
            .count()
    }

    /// `GroupedConnections()` (§7.4): every live Connection of this group, this one included.
    pub fn grouped_connections(&self) -> Vec<Connection> {
        self.members()
            .into_iter()
            .filter(|m| m.status.lock().unwrap().state != ConnState::Closed)
            .map(|inner| Connection { inner })
            .collect()
    }

    /// `CloseGroup()`: close every Connection of the group.
    ///
    /// The members close together, each as [`close`](Self::close) does and
    /// each within its own [`CLOSE_TIMEOUT`], so the whole group is closed
    /// within one `CLOSE_TIMEOUT`, not one per member. The error is the
    /// first failing member's (in group order).
    pub async fn close_group(&self) -> Result<(), Error> {
        let members = self.members();
        let shared = members
            .iter()
            .find_map(|m| m.abort_handle.lock().unwrap().clone());
        let closed = futures::future::join_all(members.iter().map(Inner::close)).await;
        let first_err = closed.into_iter().find_map(Result::err);
        // A multiplexed stack (QUIC) closes its connection once every stream finished.
        if let Some(t) = shared {
            t.close_shared(false);
        }
        first_err.map_or(Ok(()), Err)
    }

    /// `AbortGroup()`: abort every Connection of the group.
    pub fn abort_group(&self) {
        let members = self.members();
        if let Some(t) = members
            .iter()
            .find_map(|m| m.abort_handle.lock().unwrap().clone())
        {
            t.close_shared(true);
        }
        for m in members {
            m.abort(Error::new(
                ErrorReason::ConnectionAborted,
                "local AbortGroup",
            ));
        }
    }

    /// The RFC's `Clone(framer?, connectionProperties?)` (§7.4): a new
    /// Connection in this one's group, to the same remote, with the same
    /// properties (entangled) unless given. For TCP it is a new TCP
    /// connection. Fails with CloneError reasons (NotCloneable, or the
    /// attempt's failure, or Timeout past connTimeout, else
    /// [`DEFAULT_ESTABLISHMENT_TIMEOUT`](crate::DEFAULT_ESTABLISHMENT_TIMEOUT)).
    /// Its framers start and greet as a new Connection's do, also on a new
    /// stream of a multiplexed stack. (Rust's [`Clone::clone`] is another
    /// thing: a second handle to this same Connection.)
    #[doc(alias = "Clone")]
    pub async fn clone_in_group(
        &self,
        framers: Option<Vec<Box<dyn crate::framer::Framer>>>,
        properties: Option<ConnectionProperties>,
    ) -> Result<Connection, Error> {
        let inner = &self.inner;
        // A Rendezvous Connection (WebRTC) has no remote address to reconnect
        // to, but clones as a new channel on the same peer connection.
        if inner.reconnect.is_none() && !inner.caps.rendezvous {
            return Err(Error::new(
                ErrorReason::NotCloneable,
                "a Connection received by a Listener cannot be cloned from this side",
            ));
        }
        let props_now = self.properties();
        if let Some(limit) = props_now.group_conn_limit {
            if self.grouped_count() as u64 >= limit {
                return Err(Error::new(
                    ErrorReason::NotCloneable,
                    format!("groupConnLimit {limit} reached"),
                ));
            }
        }
        let mut props = TransportProperties::clone(&inner.props);
        props.connection = properties.unwrap_or(props_now);
        let props = Arc::new(props);
        let framers = match framers {
            Some(f) => FramerStack { framers: f.into() },
            None => inner.send_q.lock().unwrap().framers.fresh(),
        };
        // Bounded as an Initiate is: by connTimeout, else the default.
        let limit = props
            .connection
            .conn_timeout
            .unwrap_or(crate::DEFAULT_ESTABLISHMENT_TIMEOUT);
        let what = format!("Clone: the new {} Connection", inner.caps.stack);
        crate::runtime::with_timeout(limit, &what, self.clone_within(framers, props)).await
    }

    /// [`clone_in_group`](Self::clone_in_group) past its checks.
    async fn clone_within(
        &self,
        mut framers: FramerStack,
        props: Arc<TransportProperties>,
    ) -> Result<Connection, Error> {
        let inner = &self.inner;
        let reconnect = inner.reconnect.clone();
        let Some(t) = inner.abort_handle.lock().unwrap().clone() else {
            return Err(Error::new(
                ErrorReason::NotCloneable,
                "the Connection is closed",
            ));
        };
        // A multiplexed stack (QUIC) clones as a new stream on the same connection.
        if let Some(opened) = t.open_sibling(&props).await {
            let transport = opened.map_err(|e| {
                Error::new(
                    ErrorReason::NotCloneable,
                    format!("opening a new {} stream: {e}", inner.caps.stack),
                )
            })?;
            // The new stream's framers start (and greet) as every
            // Connection's do; the peer's Listener expects it.
            let leftover = crate::attempt::framer_start(&transport, &inner.caps, &mut framers)
                .await
                .map_err(|m| {
                    Error::new(
                        ErrorReason::ProtocolFailed,
                        format!("Clone on a new {} stream: {m}", inner.caps.stack),
                    )
                })?;
            let parts = Parts {
                transport,
                caps: inner.caps,
                framers,
                leftover,
                props,
                trace: Default::default(),
                remote: inner.remote().clone(),
                remote_addr: inner.remote_addr,
                local: inner.endpoints.local.clone(),
                reconnect,
                early_sent: false,
                peer_early_data: false,
            };
            return Ok(Connection::from_parts(
                parts,
                Some(Inner::group(inner).clone()),
            ));
        }
        let Some(reconnect) = reconnect else {
            return Err(Error::new(
                ErrorReason::NotCloneable,
                format!(
                    "{} cannot open another connection from this side",
                    inner.caps.stack
                ),
            ));
        };
        let (transport, framers, leftover, again) =
            crate::attempt::reopen(&reconnect, &props, framers).await?;
        let parts = Parts {
            transport,
            caps: reconnect.caps,
            framers,
            leftover,
            props,
            trace: Default::default(),
            remote: inner.remote().clone(),
            remote_addr: reconnect.remote.addr(),
            local: inner.endpoints.local.clone(),
            early_sent: false,
            peer_early_data: false,
            reconnect: Some(Box::new(again)),
        };
        Ok(Connection::from_parts(
            parts,
            Some(Inner::group(inner).clone()),
        ))
    }
}
