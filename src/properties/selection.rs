//! Selection properties (RFC 9622 §6.2) and the TransportProperties object.

use super::{norm, wrong_type, ConnectionProperties, MessageProperties, Preference, PropertyValue};
use crate::capability::{Capabilities, Support};
use crate::error::Error;

/// The selection properties whose value is a [`Preference`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SelectionProperty {
    /// `reliability` (§6.2.1), default Require.
    Reliability,
    /// `preserveMsgBoundaries` (§6.2.2), default No Preference.
    PreserveMsgBoundaries,
    /// `perMsgReliability` (§6.2.3), default No Preference.
    PerMsgReliability,
    /// `preserveOrder` (§6.2.4), default Require.
    PreserveOrder,
    /// `zeroRttMsg` (§6.2.5), default No Preference.
    ZeroRttMsg,
    /// `multistreaming` (§6.2.6), default Prefer.
    Multistreaming,
    /// `fullChecksumSend` (§6.2.7), default Require.
    FullChecksumSend,
    /// `fullChecksumRecv` (§6.2.8), default Require.
    FullChecksumRecv,
    /// `congestionControl` (§6.2.9), default Require.
    CongestionControl,
    /// `keepAlive` (§6.2.10), default No Preference.
    KeepAlive,
    /// `useTemporaryLocalAddress` (§6.2.13): Avoid for Listeners/Rendezvous, Prefer otherwise.
    UseTemporaryLocalAddress,
    /// `softErrorNotify` (§6.2.17), default No Preference.
    SoftErrorNotify,
    /// `activeReadBeforeSend` (§6.2.18), default No Preference.
    ActiveReadBeforeSend,
}

impl SelectionProperty {
    /// Every preference-valued selection property.
    pub const ALL: [SelectionProperty; 13] = [
        SelectionProperty::Reliability,
        SelectionProperty::PreserveMsgBoundaries,
        SelectionProperty::PerMsgReliability,
        SelectionProperty::PreserveOrder,
        SelectionProperty::ZeroRttMsg,
        SelectionProperty::Multistreaming,
        SelectionProperty::FullChecksumSend,
        SelectionProperty::FullChecksumRecv,
        SelectionProperty::CongestionControl,
        SelectionProperty::KeepAlive,
        SelectionProperty::UseTemporaryLocalAddress,
        SelectionProperty::SoftErrorNotify,
        SelectionProperty::ActiveReadBeforeSend,
    ];

    /// The RFC name (`preserveMsgBoundaries`).
    pub fn name(self) -> &'static str {
        match self {
            SelectionProperty::Reliability => "reliability",
            SelectionProperty::PreserveMsgBoundaries => "preserveMsgBoundaries",
            SelectionProperty::PerMsgReliability => "perMsgReliability",
            SelectionProperty::PreserveOrder => "preserveOrder",
            SelectionProperty::ZeroRttMsg => "zeroRttMsg",
            SelectionProperty::Multistreaming => "multistreaming",
            SelectionProperty::FullChecksumSend => "fullChecksumSend",
            SelectionProperty::FullChecksumRecv => "fullChecksumRecv",
            SelectionProperty::CongestionControl => "congestionControl",
            SelectionProperty::KeepAlive => "keepAlive",
            SelectionProperty::UseTemporaryLocalAddress => "useTemporaryLocalAddress",
            SelectionProperty::SoftErrorNotify => "softErrorNotify",
            SelectionProperty::ActiveReadBeforeSend => "activeReadBeforeSend",
        }
    }

    /// Look a property up by its RFC name, case-insensitively.
    pub fn from_name(name: &str) -> Option<SelectionProperty> {
        let n = norm(name);
        SelectionProperty::ALL
            .into_iter()
            .find(|p| norm(p.name()) == n)
    }

    /// The RFC default for an Initiate (see [`TransportProperties::for_listener`] for Listeners).
    pub fn default_preference(self) -> Preference {
        match self {
            SelectionProperty::Reliability
            | SelectionProperty::PreserveOrder
            | SelectionProperty::FullChecksumSend
            | SelectionProperty::FullChecksumRecv
            | SelectionProperty::CongestionControl => Preference::Require,
            SelectionProperty::Multistreaming | SelectionProperty::UseTemporaryLocalAddress => {
                Preference::Prefer
            }
            _ => Preference::NoPreference,
        }
    }

    /// What a stack offers for this property; `None` for path properties that
    /// do not depend on the stack (useTemporaryLocalAddress).
    pub fn support(self, caps: &Capabilities) -> Option<Support> {
        Some(match self {
            SelectionProperty::Reliability => caps.reliability,
            SelectionProperty::PreserveMsgBoundaries => caps.preserve_msg_boundaries,
            SelectionProperty::PerMsgReliability => caps.per_msg_reliability,
            SelectionProperty::PreserveOrder => caps.preserve_order,
            SelectionProperty::ZeroRttMsg => caps.zero_rtt_msg,
            SelectionProperty::Multistreaming => caps.multistreaming,
            SelectionProperty::FullChecksumSend => caps.full_checksum_send,
            SelectionProperty::FullChecksumRecv => caps.full_checksum_recv,
            SelectionProperty::CongestionControl => caps.congestion_control,
            SelectionProperty::KeepAlive => caps.keep_alive,
            SelectionProperty::SoftErrorNotify => caps.soft_error_notify,
            SelectionProperty::ActiveReadBeforeSend => caps.active_read_before_send,
            SelectionProperty::UseTemporaryLocalAddress => return None,
        })
    }

    fn index(self) -> usize {
        SelectionProperty::ALL
            .iter()
            .position(|p| *p == self)
            .expect("in ALL")
    }
}

/// `multipath` (§6.2.14).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Multipath {
    /// Do not use multipath (default for Initiate and Rendezvous).
    Disabled,
    /// Actively use several paths.
    Active,
    /// Accept multipath if the peer asks (default for Listeners).
    Passive,
}

/// `direction` (§6.2.16).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Direction {
    /// Both directions (default).
    #[default]
    Bidirectional,
    /// This end only sends.
    UnidirectionalSend,
    /// This end only receives.
    UnidirectionalReceive,
}

/// The TransportProperties object (RFC 9622 §6.2): selection properties with
/// their preference levels, plus the Connection Properties and default Message
/// Properties that Connections created from the Preconnection start with.
#[derive(Debug, Clone, PartialEq)]
pub struct TransportProperties {
    prefs: [Preference; 13],
    explicit: [bool; 13],
    /// `interface` (§6.2.11): interface names with a preference each.
    pub interface: Vec<(Preference, String)>,
    /// `pvd` (§6.2.12): provisioning domains with a preference each.
    pub pvd: Vec<(Preference, String)>,
    /// `multipath` (§6.2.14); `None` is the RFC default for the action.
    pub multipath: Option<Multipath>,
    /// `advertisesAltaddr` (§6.2.15), default false.
    pub advertises_altaddr: bool,
    /// `direction` (§6.2.16), default bidirectional.
    pub direction: Direction,
    /// Connection Properties the Connections start with (§8.1).
    pub connection: ConnectionProperties,
    /// Default Message Properties of every Message sent (§9.1.3).
    pub message_defaults: MessageProperties,
    /// Protocol-specific options in the protocol's namespace (RFC 9622 §4.1,
    /// §6.1.3), e.g. `ws.path`; see [`PROTOCOL_OPTIONS`](Self::PROTOCOL_OPTIONS).
    pub protocol_options: std::collections::BTreeMap<String, String>,
}

impl Default for TransportProperties {
    fn default() -> Self {
        TransportProperties {
            prefs: SelectionProperty::ALL.map(SelectionProperty::default_preference),
            explicit: [false; 13],
            interface: Vec::new(),
            pvd: Vec::new(),
            multipath: None,
            advertises_altaddr: false,
            direction: Direction::Bidirectional,
            connection: ConnectionProperties::default(),
            message_defaults: MessageProperties::default(),
            protocol_options: std::collections::BTreeMap::new(),
        }
    }
}

impl TransportProperties {
    /// The protocol-specific options postsocket knows, by namespaced name:
    /// the HTTP path of a WebSocket (`ws.path`, `wss.path`, default `/`) and
    /// of a WebTransport session (`wt.path`, default `/`).
    pub const PROTOCOL_OPTIONS: [&'static str; 3] = ["ws.path", "wss.path", "wt.path"];

    /// A protocol-specific option (`protocol_option("ws.path")`), if set.
    pub fn protocol_option(&self, name: &str) -> Option<&str> {
        self.protocol_options
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }

    /// `NewTransportProperties()`: every property at its RFC default.
    pub fn new() -> Self {
        Self::default()
    }

    /// Profile `reliable-inorder-stream` (RFC 9622 Appendix B.1).
    pub fn reliable_inorder_stream() -> Self {
        Self::new()
            .require(SelectionProperty::Reliability)
            .require(SelectionProperty::PreserveOrder)
    }

    /// Profile `reliable-message` (Appendix B.2).
    pub fn reliable_message() -> Self {
        Self::reliable_inorder_stream().require(SelectionProperty::PreserveMsgBoundaries)
    }

    /// Profile `unreliable-datagram` (Appendix B.3): reliability and order
    /// avoided, congestion control no preference, boundaries required, and
    /// messages marked safelyReplayable by default.
    pub fn unreliable_datagram() -> Self {
        let mut p = Self::new()
            .avoid(SelectionProperty::Reliability)
            .avoid(SelectionProperty::PreserveOrder)
            .no_preference(SelectionProperty::CongestionControl)
            .require(SelectionProperty::PreserveMsgBoundaries);
        p.message_defaults.safely_replayable = true;
        p
    }

    /// A profile by its RFC name.
    pub fn profile(name: &str) -> Result<Self, Error> {
        match norm(name).as_str() {
            "reliableinorderstream" => Ok(Self::reliable_inorder_stream()),
            "reliablemessage" => Ok(Self::reliable_message()),
            "unreliabledatagram" => Ok(Self::unreliable_datagram()),
            _ => Err(Error::invalid_configuration(format!(
                "unknown profile `{name}`; known: reliable-inorder-stream, reliable-message, unreliable-datagram"
            ))),
        }
    }

    /// The value for the Listener defaults: useTemporaryLocalAddress Avoid
    /// unless set explicitly; multipath Passive unless set.
    pub fn for_listener(&self) -> Self {
        let mut p = self.clone();
        let i = SelectionProperty::UseTemporaryLocalAddress.index();
        if !p.explicit[i] {
            p.prefs[i] = Preference::Avoid;
        }
        p.multipath.get_or_insert(Multipath::Passive);
        p
    }

    /// Set a preference-valued property.
    pub fn set_preference(&mut self, property: SelectionProperty, preference: Preference) {
        let i = property.index();
        self.prefs[i] = preference;
        self.explicit[i] = true;
    }

    /// The preference of a property.
    pub fn get(&self, property: SelectionProperty) -> Preference {
        self.prefs[property.index()]
    }

    /// Whether the application set this property (explicit values weigh more in ranking).
    pub fn is_explicit(&self, property: SelectionProperty) -> bool {
        self.explicit[property.index()]
    }

    /// `.Require(property)`.
    pub fn require(mut self, property: SelectionProperty) -> Self {
        self.set_preference(property, Preference::Require);
        self
    }
    /// `.Prefer(property)`.
    pub fn prefer(mut self, property: SelectionProperty) -> Self {
        self.set_preference(property, Preference::Prefer);
        self
    }
    /// `.NoPreference(property)`.
    pub fn no_preference(mut self, property: SelectionProperty) -> Self {
        self.set_preference(property, Preference::NoPreference);
        self
    }
    /// `.Avoid(property)`.
    pub fn avoid(mut self, property: SelectionProperty) -> Self {
        self.set_preference(property, Preference::Avoid);
        self
    }
    /// `.Prohibit(property)`.
    pub fn prohibit(mut self, property: SelectionProperty) -> Self {
        self.set_preference(property, Preference::Prohibit);
        self
    }

    /// `.Set(property, value)` by RFC name. Selection properties, Connection
    /// Properties and default Message Properties are all accepted; an unknown
    /// name or a value of the wrong type is an InvalidConfiguration error.
    pub fn set(&mut self, name: &str, value: impl Into<PropertyValue>) -> Result<(), Error> {
        self.set_value(name, value.into())
    }

    /// [`set`](Self::set), as a builder:
    /// `TransportProperties::new().with("reliability", "require")?`.
    pub fn with(mut self, name: &str, value: impl Into<PropertyValue>) -> Result<Self, Error> {
        self.set(name, value)?;
        Ok(self)
    }

    /// [`set_preference`](Self::set_preference), as a builder.
    pub fn with_preference(mut self, property: SelectionProperty, preference: Preference) -> Self {
        self.set_preference(property, preference);
        self
    }

    // One copy in the program, whatever the callers' value types.
    fn set_value(&mut self, name: &str, value: PropertyValue) -> Result<(), Error> {
        if let Some(p) = SelectionProperty::from_name(name) {
            let pref = match &value {
                PropertyValue::Preference(p) => *p,
                PropertyValue::Text(t) => Preference::parse(t)?,
                // A Boolean reads as Require / Prohibit (RFC 9622 §6.2).
                PropertyValue::Bool(true) => Preference::Require,
                PropertyValue::Bool(false) => Preference::Prohibit,
                other => return Err(wrong_type(name, "a preference", other)),
            };
            self.set_preference(p, pref);
            return Ok(());
        }
        if let Some((ns, _)) = name.split_once('.') {
            if !ns.eq_ignore_ascii_case("tcp") {
                let key = name.to_ascii_lowercase();
                if !Self::PROTOCOL_OPTIONS.contains(&key.as_str()) {
                    return Err(Error::invalid_configuration(format!(
                        "unknown protocol-specific property `{name}`; known: tcp.userTimeoutValue, tcp.userTimeoutEnabled, tcp.userTimeoutChangeable, {}",
                        Self::PROTOCOL_OPTIONS.join(", ")
                    )));
                }
                let PropertyValue::Text(v) = value else {
                    return Err(wrong_type(name, "text", &value));
                };
                if key.ends_with(".path") && !v.starts_with('/') {
                    return Err(Error::invalid_configuration(format!(
                        "`{name}` must be an absolute path starting with `/`, not `{v}`"
                    )));
                }
                self.protocol_options.insert(key, v);
                return Ok(());
            }
        }
        match norm(name).as_str() {
            "interface" | "pvd" => {
                let PropertyValue::Text(t) = &value else {
                    return Err(wrong_type(name, "text `preference:name`", &value));
                };
                let (pref, item) = match t.split_once(':') {
                    Some((p, n)) => (Preference::parse(p)?, n.to_string()),
                    None => (Preference::Require, t.clone()),
                };
                if norm(name) == "interface" {
                    self.interface.push((pref, item));
                } else {
                    self.pvd.push((pref, item));
                }
                Ok(())
            }
            "multipath" => {
                let PropertyValue::Text(t) = &value else {
                    return Err(wrong_type(name, "disabled, active or passive", &value));
                };
                self.multipath = Some(match norm(t).as_str() {
                    "disabled" => Multipath::Disabled,
                    "active" => Multipath::Active,
                    "passive" => Multipath::Passive,
                    _ => {
                        return Err(Error::invalid_configuration(format!(
                            "multipath `{t}`: use disabled, active or passive"
                        )))
                    }
                });
                Ok(())
            }
            "advertisesaltaddr" => match value {
                PropertyValue::Bool(b) => {
                    self.advertises_altaddr = b;
                    Ok(())
                }
                other => Err(wrong_type(name, "a boolean", &other)),
            },
            "direction" => {
                let PropertyValue::Text(t) = &value else {
                    return Err(wrong_type(name, "a direction", &value));
                };
                self.direction = match norm(t).as_str() {
                    "bidirectional" => Direction::Bidirectional,
                    "unidirectionalsend" => Direction::UnidirectionalSend,
                    "unidirectionalreceive" => Direction::UnidirectionalReceive,
                    _ => {
                        return Err(Error::invalid_configuration(format!(
                        "direction `{t}`: use bidirectional, unidirectionalSend or unidirectionalReceive"
                    )))
                    }
                };
                Ok(())
            }
            _ => match self.connection.set(name, value.clone()) {
                Err(e) if e.message.starts_with("unknown Connection Property") => {
                    match self.message_defaults.set(name, value) {
                        Err(e) if e.message.starts_with("unknown Message Property") => {
                            Err(Error::invalid_configuration(format!(
                                "unknown property `{name}` (RFC 9622 names, e.g. reliability, preserveMsgBoundaries, connTimeout, msgLifetime)"
                            )))
                        }
                        other => other,
                    }
                }
                other => other,
            },
        }
    }

    /// Contradictions that no stack could ever satisfy (RFC 9623 §3.1),
    /// detected before any network activity.
    pub fn check_consistency(&self) -> Result<(), Error> {
        use Preference::*;
        use SelectionProperty as P;
        let contradictions: [(P, Preference, P, Preference, &str); 3] = [
            (
                P::Reliability,
                Prohibit,
                P::PreserveOrder,
                Require,
                "in-order delivery needs retransmission of lost data",
            ),
            (
                P::Reliability,
                Prohibit,
                P::PerMsgReliability,
                Require,
                "per-message reliability needs a stack that can deliver reliably",
            ),
            (
                P::Reliability,
                Require,
                P::CongestionControl,
                Prohibit,
                "every reliable stack here runs congestion control",
            ),
        ];
        for (a, av, b, bv, why) in contradictions {
            if self.get(a) == av && self.get(b) == bv {
                return Err(Error::invalid_configuration(format!(
                    "{} {} contradicts {} {}: {why}",
                    av,
                    a.name(),
                    bv,
                    b.name()
                )));
            }
        }
        if self.direction != Direction::Bidirectional
            && self.get(P::ActiveReadBeforeSend) == Require
            && self.direction == Direction::UnidirectionalSend
        {
            return Err(Error::invalid_configuration(
                "Require activeReadBeforeSend contradicts direction unidirectionalSend",
            ));
        }
        self.connection.validate()?;
        Ok(())
    }
}
