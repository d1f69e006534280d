//! The Preconnection (RFC 9622 §6): a passive bag of endpoints, properties
//! and framers. Each action (initiate, listen) takes an immutable copy, so
//! later changes never affect Connections or Listeners already made.

use crate::capability::StackId;
use crate::connection::{Connection, SendFailure, Sent};
use crate::context::TransportContext;
use crate::endpoint::{LocalEndpoint, RemoteEndpoint};
use crate::error::{Error, ErrorReason};
use crate::establish::{self, Config, Snapshot};
use crate::framer::{Frame, Framer, FramerStack};
use crate::listener::Listener;
use crate::message::MessageContext;
use crate::properties::{Preference, SelectionProperty, TransportProperties};
use crate::racing::{RacingConfig, RacingMode};
use crate::resolver::{Resolver, SystemResolver};
use crate::security::SecurityParameters;
use crate::trace::TraceEvent;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// How long an establishment (Initiate, InitiateWithSend) may take when
/// neither `initiate_with_timeout` nor connTimeout bounds it: the same as
/// Rendezvous's default.
pub const DEFAULT_ESTABLISHMENT_TIMEOUT: Duration = Duration::from_secs(30);

/// The Preconnection.
#[derive(Clone)]
pub struct Preconnection {
    /// Endpoints, properties, resolver and racing settings: shared with the
    /// clones and snapshots taken since (an Initiate copies a pointer), and
    /// copied on the first change after one was taken.
    config: Arc<Config>,
    /// The framers added, as templates: shared with the clones and
    /// snapshots taken since (copied on the next change), as each attempt
    /// and Connection takes fresh instances of its own.
    framers: Arc<FramerStack>,
    context: TransportContext,
    listener_limits: crate::listener::ListenerLimits,
    /// The stacks selection chose for the properties, security, framers
    /// and protocols above, once an Initiate computed them: shared with the
    /// snapshots (and clones) taken since, and replaced by an empty one
    /// whenever one of those inputs may change.
    selection: Selection,
}

/// A selection's result, computed at most once per set of inputs.
pub(crate) type Selection = Arc<std::sync::OnceLock<Vec<crate::capability::Capabilities>>>;

impl std::fmt::Debug for Preconnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Preconnection")
            .field("locals", &self.config.locals)
            .field("remotes", &self.config.remotes)
            .field("props", &self.config.props)
            .field("security", &self.config.security)
            .field("racing", &self.config.racing)
            .field("protocols", &self.config.protocols)
            .finish()
    }
}

impl Preconnection {
    /// `NewPreconnection(locals, remotes, transportProperties, securityParameters)`.
    pub fn new(
        locals: Vec<LocalEndpoint>,
        remotes: Vec<RemoteEndpoint>,
        props: TransportProperties,
        security: SecurityParameters,
    ) -> Self {
        Preconnection {
            config: Arc::new(Config {
                locals,
                remotes,
                props: Arc::new(props),
                security,
                resolver: Arc::new(SystemResolver),
                racing: RacingConfig::default(),
                protocols: None,
                observer: None,
            }),
            framers: Arc::default(),
            context: TransportContext::global(),
            listener_limits: Default::default(),
            selection: Selection::default(),
        }
    }

    /// Race with what `context` remembers, and teach it (instead of the
    /// process-wide [`TransportContext::global`]). A fresh
    /// [`TransportContext::new`] isolates a group of Preconnections;
    /// `isolateSession` keeps a Connection out of every context.
    pub fn set_transport_context(&mut self, context: TransportContext) -> &mut Self {
        self.context = context;
        self
    }

    /// The configuration, to change: copied first if a clone or snapshot
    /// shares it, so they keep what they were taken with.
    fn config_mut(&mut self) -> &mut Config {
        Arc::make_mut(&mut self.config)
    }

    /// The TransportContext this Preconnection races with.
    pub fn transport_context(&self) -> &TransportContext {
        &self.context
    }

    /// `Preconnection.AddFramer(framer)` (§9.1.2.1): the last added runs first on send.
    pub fn add_framer(&mut self, framer: impl Framer) -> &mut Self {
        Arc::make_mut(&mut self.framers)
            .framers
            .push(Box::new(framer));
        self.selection = Selection::default();
        self
    }

    /// `Preconnection.AddRemote(remotes)` (§7.3).
    pub fn add_remote(&mut self, remotes: impl IntoIterator<Item = RemoteEndpoint>) -> &mut Self {
        self.config_mut().remotes.extend(remotes);
        self
    }

    /// Replace the name resolver (tests use this to control answer timing).
    pub fn set_resolver(&mut self, resolver: impl Resolver) -> &mut Self {
        self.config_mut().resolver = Arc::new(resolver);
        self
    }

    /// Restrict the protocol stacks that may be raced (system policy, RFC 9623 §3.2).
    pub fn set_protocols(&mut self, stacks: Vec<StackId>) -> &mut Self {
        self.config_mut().protocols = Some(stacks);
        self.selection = Selection::default();
        self
    }

    /// The Connection Attempt Delay (RFC 8305 §5): 250 ms by default; 10 ms
    /// to 2 s, checked when an action starts.
    /// Setting it turns off the adaptive delay (which follows the
    /// TransportContext's measured handshake times): this value is used as is.
    pub fn set_connection_attempt_delay(&mut self, delay: Duration) -> &mut Self {
        self.config_mut().racing.connection_attempt_delay = delay;
        self.config_mut().racing.adaptive_delay = false;
        self
    }

    /// The racing mode: staggered (default), failover or simultaneous.
    pub fn set_racing_mode(&mut self, mode: RacingMode) -> &mut Self {
        self.config_mut().racing.mode = mode;
        self
    }

    /// [`set_transport_context`](Self::set_transport_context), as a builder.
    pub fn with_transport_context(mut self, context: TransportContext) -> Self {
        self.set_transport_context(context);
        self
    }

    /// [`add_framer`](Self::add_framer), as a builder.
    pub fn with_framer(mut self, framer: impl Framer) -> Self {
        self.add_framer(framer);
        self
    }

    /// [`add_remote`](Self::add_remote), as a builder.
    pub fn with_remote(mut self, remotes: impl IntoIterator<Item = RemoteEndpoint>) -> Self {
        self.add_remote(remotes);
        self
    }

    /// [`set_resolver`](Self::set_resolver), as a builder.
    pub fn with_resolver(mut self, resolver: impl Resolver) -> Self {
        self.set_resolver(resolver);
        self
    }

    /// [`set_protocols`](Self::set_protocols), as a builder.
    pub fn with_protocols(mut self, stacks: Vec<StackId>) -> Self {
        self.set_protocols(stacks);
        self
    }

    /// [`set_connection_attempt_delay`](Self::set_connection_attempt_delay), as a builder.
    pub fn with_connection_attempt_delay(mut self, delay: Duration) -> Self {
        self.set_connection_attempt_delay(delay);
        self
    }

    /// [`set_racing_mode`](Self::set_racing_mode), as a builder.
    pub fn with_racing_mode(mut self, mode: RacingMode) -> Self {
        self.set_racing_mode(mode);
        self
    }

    /// [`set_listener_limits`](Self::set_listener_limits), as a builder.
    pub fn with_listener_limits(mut self, limits: crate::listener::ListenerLimits) -> Self {
        self.set_listener_limits(limits);
        self
    }

    /// All racing settings.
    pub fn racing_config_mut(&mut self) -> &mut RacingConfig {
        &mut self.config_mut().racing
    }

    /// Observe every trace event live, as it happens (the demo and `tapscat --trace` use this).
    pub fn on_trace(
        &mut self,
        observer: impl Fn(&TraceEvent) + Send + Sync + 'static,
    ) -> &mut Self {
        self.config_mut().observer = Some(Arc::new(observer));
        self
    }

    /// The TransportProperties, to change before the next action.
    pub fn transport_properties_mut(&mut self) -> &mut TransportProperties {
        self.selection = Selection::default();
        Arc::make_mut(&mut self.config_mut().props)
    }

    /// The SecurityParameters, to change before the next action.
    pub fn security_parameters_mut(&mut self) -> &mut SecurityParameters {
        self.selection = Selection::default();
        &mut self.config_mut().security
    }

    /// `Resolve()` (§7.3): the LocalEndpoints and RemoteEndpoints with names
    /// resolved to addresses (AAAA then A), one endpoint per address.
    pub async fn resolve(&self) -> Result<(Vec<LocalEndpoint>, Vec<RemoteEndpoint>), Error> {
        let mut out = Vec::new();
        for r in &self.config.remotes {
            match (r.ip_address(), r.host_name()) {
                (None, Some(host)) => {
                    let mut errs = Vec::new();
                    for fam in [crate::racing::Family::V6, crate::racing::Family::V4] {
                        match self.config.resolver.resolve(host, fam).await {
                            Ok(ips) => {
                                for ip in ips {
                                    let mut e = RemoteEndpoint::new().with_ip_address(ip)?;
                                    if let Some(p) = r.port() {
                                        e = e.with_port(p)?;
                                    }
                                    out.push(e);
                                }
                            }
                            Err(m) => errs.push(m),
                        }
                    }
                    if errs.len() == 2 {
                        return Err(Error::new(ErrorReason::ResolutionFailed, errs.join("; ")));
                    }
                }
                _ => out.push(r.clone()),
            }
        }
        Ok((self.config.locals.clone(), out))
    }

    /// The LocalEndpoints (read-only; Rendezvous).
    pub(crate) fn locals(&self) -> &[LocalEndpoint] {
        &self.config.locals
    }

    /// The TransportProperties (read-only; Rendezvous).
    pub(crate) fn transport_properties(&self) -> &TransportProperties {
        &self.config.props
    }

    /// The SecurityParameters (read-only; Rendezvous).
    pub(crate) fn security_parameters(&self) -> &SecurityParameters {
        &self.config.security
    }

    /// The stacks `set_protocols` allows, if set.
    pub(crate) fn protocols_set(&self) -> Option<&[StackId]> {
        self.config.protocols.as_deref()
    }

    /// Whether the application added framers.
    pub(crate) fn has_framers(&self) -> bool {
        !self.framers.is_empty()
    }

    /// A fresh copy of the framer stack, for one new Connection.
    pub(crate) fn framers_fresh(&self) -> FramerStack {
        self.framers.fresh()
    }

    pub(crate) fn snapshot(&self) -> Snapshot {
        Snapshot {
            config: Arc::clone(&self.config),
            framers: Arc::clone(&self.framers),
            early_data: None,
            context: (!self.config.props.connection.isolate_session).then(|| self.context.clone()),
            selection: self.selection.clone(),
        }
    }

    /// `Initiate()` (§7.1): race the candidates and resolve at Ready with the
    /// Connection, or with the EstablishmentError that lists every
    /// candidate's failure. Configuration errors (contradictory or
    /// unsatisfiable properties, no remote) fail before any network activity.
    ///
    /// It never waits forever: past connTimeout, if set, or else
    /// [`DEFAULT_ESTABLISHMENT_TIMEOUT`] (30 s), it fails with a Timeout
    /// EstablishmentError (a server that accepts TCP and then stays silent
    /// during TLS, say). [`initiate_with_timeout`](Self::initiate_with_timeout)
    /// sets the bound for one call.
    pub fn initiate(&self) -> impl Future<Output = Result<Connection, Error>> + 'static {
        self.initiate_inner(None)
    }

    /// `Initiate(timeout)`: give up with a Timeout EstablishmentError after
    /// `timeout` (which wins over connTimeout and the default).
    pub fn initiate_with_timeout(
        &self,
        timeout: Duration,
    ) -> impl Future<Output = Result<Connection, Error>> + 'static {
        self.initiate_inner(Some(timeout))
    }

    fn initiate_inner(
        &self,
        timeout: Option<Duration>,
    ) -> impl Future<Output = Result<Connection, Error>> + 'static {
        let snap = self.snapshot();
        async move {
            if snap.remotes.is_empty() {
                return Err(Error::invalid_configuration(
                    "Initiate needs at least one RemoteEndpoint (RFC 9622 §7.1)",
                ));
            }
            let parts = establish::establish(&snap, timeout).await?;
            Ok(Connection::from_parts(parts, None))
        }
    }

    /// `InitiateWithSend(messageData, messageContext?)` (§9.2.5): initiate and
    /// send the first Message. When the Message is safelyReplayable (and
    /// zeroRttMsg is not prohibited), every 0-RTT-capable candidate (QUIC with
    /// a session ticket from an earlier Connection) sends it as 0-RTT early
    /// data during the handshake (RFC 9623 §5.3); otherwise it goes right
    /// after Ready. Either way it is delivered once. A failure to establish
    /// is reported only as the EstablishmentError.
    pub fn initiate_with_send(
        &self,
        data: impl Into<bytes::Bytes>,
        context: Option<MessageContext>,
    ) -> impl Future<Output = Result<(Connection, Result<Sent, SendFailure>), Error>> + 'static
    {
        let data: bytes::Bytes = data.into();
        let context = context.unwrap_or_default();
        let mut snap = self.snapshot();
        let message = context.resolve(&self.config.props.message_defaults);
        // Early data is the Message as a plain send would write it first on
        // the stream: anything a send would check or do besides (a length
        // bound, final, unreliable or unsegmented delivery, partial checksum
        // coverage) leaves it to that send, which checks it.
        let plain = self
            .config
            .props
            .connection
            .send_msg_max_len
            .is_none_or(|max| data.len() as u64 <= max)
            && !message.final_
            && message.msg_reliable != Some(false)
            && !message.no_fragmentation
            && !message.no_segmentation
            && message.msg_checksum_len == crate::properties::ChecksumCoverage::Full;
        if message.safely_replayable
            && plain
            && self.config.props.get(SelectionProperty::ZeroRttMsg) != Preference::Prohibit
        {
            let mut frame = Frame {
                data: data.clone(),
                ..Frame::default()
            };
            // Early data goes on a byte stream (QUIC, TLS): framed as the
            // Connection there will frame. A framer that refuses the
            // Message leaves it to the normal send, which reports why; one
            // that writes bytes of its own first (a greeting) or waits for
            // the peer's leaves it to the send after the framers started.
            let mut framers = self
                .framers
                .for_data_unit(crate::capability::DataUnit::ByteStream, &self.config.props);
            let quiet_start = framers.framers.iter().all(|f| {
                matches!(f.boxed_clone().start(), Ok(crate::framer::Start::Ready(b)) if b.is_empty())
            });
            if quiet_start && framers.frame(&mut frame, &context, true).is_ok() {
                snap.early_data = Some(frame.concat().into());
            }
        }
        async move {
            if snap.remotes.is_empty() {
                return Err(Error::invalid_configuration(
                    "Initiate needs at least one RemoteEndpoint (RFC 9622 §7.1)",
                ));
            }
            let parts = establish::establish(&snap, None).await?;
            let conn = Connection::from_parts(parts, None);
            let sent = match conn.sent_as_early_data(&context) {
                Some(sent) => Ok(sent),
                None => conn.send(data, Some(context), true).await,
            };
            Ok((conn, sent))
        }
    }

    /// `Listen()` (§7.2): a Listener on the LocalEndpoint, accepting every
    /// stack the properties allow, on the same port number.
    ///
    /// Its bounds are [`set_listener_limits`](Self::set_listener_limits)'s;
    /// a bound of 0 is refused with InvalidConfiguration naming it.
    pub async fn listen(&self) -> Result<Listener, Error> {
        Listener::bind(self.snapshot(), self.listener_limits.clone()).await
    }

    /// The bounds of the Listeners this Preconnection makes (`Listen`): what
    /// a Listener may spend on peers before it pushes back (see
    /// [`ListenerLimits`](crate::ListenerLimits) for each, and its default).
    pub fn set_listener_limits(&mut self, limits: crate::listener::ListenerLimits) -> &mut Self {
        self.listener_limits = limits;
        self
    }

    /// The bounds `Listen` uses.
    pub fn listener_limits(&self) -> &crate::listener::ListenerLimits {
        &self.listener_limits
    }
}
