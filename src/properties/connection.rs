//! Connection Properties (RFC 9622 §8.1).

use super::{norm, wrong_type, PropertyValue};
use crate::error::Error;
use std::time::Duration;

/// Checksum coverage (`recvChecksumLen`, `msgChecksumLen`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ChecksumCoverage {
    /// The whole message is covered (default).
    #[default]
    Full,
    /// At least this many bytes are covered (UDP-Lite).
    Bytes(u32),
}

/// `connScheduler` (§8.1.5): RFC 8260 schedulers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ConnScheduler {
    /// First-come, first-served.
    FirstComeFirstServed,
    /// Round robin.
    RoundRobin,
    /// Round robin per packet.
    RoundRobinPerPacket,
    /// Fair bandwidth.
    FairBandwidth,
    /// Weighted fair queueing (default).
    #[default]
    WeightedFairQueueing,
}

/// `connCapacityProfile` / `msgCapacityProfile` (§8.1.6), mapped to DSCP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CapacityProfile {
    /// Best effort, DSCP DF (default).
    #[default]
    Default,
    /// Lower effort, DSCP LE.
    Scavenger,
    /// Low latency, interactive: DSCP AF41.
    LowLatencyInteractive,
    /// Low latency, non-interactive: DSCP AF21.
    LowLatencyNonInteractive,
    /// Constant-rate streaming: DSCP AF31.
    ConstantRateStreaming,
    /// Capacity-seeking: DSCP AF11.
    CapacitySeeking,
}

impl CapacityProfile {
    /// The DSCP code point this profile maps to (RFC 9622 §8.1.6).
    pub fn dscp(self) -> u8 {
        match self {
            CapacityProfile::Default => 0,                   // DF
            CapacityProfile::Scavenger => 1,                 // LE (RFC 8622)
            CapacityProfile::LowLatencyInteractive => 34,    // AF41
            CapacityProfile::LowLatencyNonInteractive => 18, // AF21
            CapacityProfile::ConstantRateStreaming => 26,    // AF31
            CapacityProfile::CapacitySeeking => 10,          // AF11
        }
    }

    /// Parse an RFC name (`lowLatencyInteractive`, `scavenger`, ...).
    pub fn parse(s: &str) -> Result<Self, Error> {
        Ok(match norm(s).as_str() {
            "default" | "besteffort" => CapacityProfile::Default,
            "scavenger" => CapacityProfile::Scavenger,
            "lowlatencyinteractive" | "interactive" => CapacityProfile::LowLatencyInteractive,
            "lowlatencynoninteractive" | "noninteractive" => {
                CapacityProfile::LowLatencyNonInteractive
            }
            "constantratestreaming" | "constantrate" => CapacityProfile::ConstantRateStreaming,
            "capacityseeking" => CapacityProfile::CapacitySeeking,
            _ => return Err(Error::invalid_configuration(format!(
                "unknown capacity profile `{s}`; known: default, scavenger, lowLatencyInteractive, lowLatencyNonInteractive, constantRateStreaming, capacitySeeking"
            ))),
        })
    }
}

/// `multipathPolicy` (§8.1.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MultipathPolicy {
    /// Use one path, move on failure (default).
    #[default]
    Handover,
    /// Minimise latency.
    Interactive,
    /// Use all paths.
    Aggregate,
}

/// `connState` (§8.1.11.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnState {
    /// Establishing.
    Establishing,
    /// Established.
    Established,
    /// Closing.
    Closing,
    /// Closed.
    Closed,
}

/// TCP-specific properties (RFC 9622 §8.2), namespace `tcp.`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpProperties {
    /// `tcp.userTimeoutValue`: the TCP user timeout (RFC 5482); `None` is the system default.
    pub user_timeout_value: Option<Duration>,
    /// `tcp.userTimeoutEnabled`, default false.
    pub user_timeout_enabled: bool,
    /// `tcp.userTimeoutChangeable`, default true.
    pub user_timeout_changeable: bool,
}

impl Default for TcpProperties {
    fn default() -> Self {
        TcpProperties {
            user_timeout_value: None,
            user_timeout_enabled: false,
            user_timeout_changeable: true,
        }
    }
}

/// The settable Connection Properties (§8.1). The read-only ones
/// (connState, canSend, ...) are computed by the Connection.
///
/// How each is honoured natively: `keepAliveTimeout` sets TCP keep-alive
/// (with `keepAlive` selected); `connTimeout` sets TCP_USER_TIMEOUT (the RFC's
/// "how long to wait before deciding an active Connection failed");
/// `connCapacityProfile` sets the DSCP of every packet; `groupConnLimit` bounds
/// clone. `connPriority`, `connScheduler`, `multipathPolicy` and the rates are
/// advisory for single-stream stacks (TCP, UDP): they are stored and read back,
/// and apply once a stack multiplexes (QUIC).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionProperties {
    /// `recvChecksumLen` (§8.1.1), default full coverage.
    pub recv_checksum_len: ChecksumCoverage,
    /// `connPriority` (§8.1.2), default 100, lower is more important.
    pub conn_priority: u32,
    /// `connTimeout` (§8.1.3), default Disabled (`None`).
    pub conn_timeout: Option<Duration>,
    /// `keepAliveTimeout` (§8.1.4), default Disabled (`None`).
    pub keep_alive_timeout: Option<Duration>,
    /// `connScheduler` (§8.1.5).
    pub conn_scheduler: ConnScheduler,
    /// `connCapacityProfile` (§8.1.6).
    pub conn_capacity_profile: CapacityProfile,
    /// `multipathPolicy` (§8.1.7).
    pub multipath_policy: MultipathPolicy,
    /// `minSendRate` in bit/s (§8.1.8), `None` = Unlimited.
    pub min_send_rate: Option<u64>,
    /// `minRecvRate` in bit/s, `None` = Unlimited.
    pub min_recv_rate: Option<u64>,
    /// `maxSendRate` in bit/s, `None` = Unlimited.
    pub max_send_rate: Option<u64>,
    /// `maxRecvRate` in bit/s, `None` = Unlimited.
    pub max_recv_rate: Option<u64>,
    /// `groupConnLimit` (§8.1.9), `None` = Unlimited.
    pub group_conn_limit: Option<u64>,
    /// `isolateSession` (§8.1.10), default false.
    pub isolate_session: bool,
    /// `recvMsgMaxLen` (§8.1.11.6) as a bound the application sets: the
    /// largest Message it accepts. `None` (the default) keeps the stack's
    /// own bound: [`crate::RECV_MSG_MAX_LEN`] (64 MiB) on a framed byte
    /// stream, the stack's Message limit on a message stack. A longer
    /// Message fails its receive (framed stream: DeframingFailed, and the
    /// stream's framing is lost; message stack: MessageTooLarge, the
    /// Connection goes on). It does not apply to a byte stream without
    /// framer, whose whole stream is one Message delivered in parts. (The
    /// RFC lists it as read-only; it reads back the bound in force.)
    pub recv_msg_max_len: Option<u64>,
    /// `sendMsgMaxLen` (§8.1.11.5) as a bound the application sets: a
    /// longer Message is refused by `send` with MessageTooLarge. `None`
    /// (the default) keeps the stack's own (its framer's, or its Message
    /// limit); a bound above the stack's is refused.
    pub send_msg_max_len: Option<u64>,
    /// The `tcp.` namespace (§8.2).
    pub tcp: TcpProperties,
}

impl Default for ConnectionProperties {
    fn default() -> Self {
        ConnectionProperties {
            recv_checksum_len: ChecksumCoverage::Full,
            conn_priority: 100,
            conn_timeout: None,
            keep_alive_timeout: None,
            conn_scheduler: ConnScheduler::default(),
            conn_capacity_profile: CapacityProfile::default(),
            multipath_policy: MultipathPolicy::default(),
            min_send_rate: None,
            min_recv_rate: None,
            max_send_rate: None,
            max_recv_rate: None,
            group_conn_limit: None,
            isolate_session: false,
            recv_msg_max_len: None,
            send_msg_max_len: None,
            tcp: TcpProperties::default(),
        }
    }
}

fn duration(name: &str, v: &PropertyValue) -> Result<Option<Duration>, Error> {
    match v {
        PropertyValue::Duration(d) => Ok(*d),
        PropertyValue::Integer(ms) => Ok(Some(Duration::from_millis(*ms))),
        PropertyValue::Text(t) if norm(t) == "disabled" => Ok(None),
        other => Err(wrong_type(name, "a duration or `disabled`", other)),
    }
}

fn rate(name: &str, v: &PropertyValue) -> Result<Option<u64>, Error> {
    match v {
        PropertyValue::Integer(n) => Ok(Some(*n)),
        PropertyValue::Text(t) if norm(t) == "unlimited" => Ok(None),
        other => Err(wrong_type(name, "an integer or `unlimited`", other)),
    }
}

fn integer(name: &str, v: &PropertyValue) -> Result<u64, Error> {
    match v {
        PropertyValue::Integer(n) => Ok(*n),
        other => Err(wrong_type(name, "an integer", other)),
    }
}

/// A Message size bound: a positive integer, or `default` (the stack's own).
fn msg_max_len(name: &str, v: &PropertyValue) -> Result<Option<u64>, Error> {
    match v {
        PropertyValue::Integer(0) => Err(Error::invalid_configuration(format!(
            "{name} 0 would refuse every Message; give at least 1, or `default`"
        ))),
        PropertyValue::Integer(n) => Ok(Some(*n)),
        PropertyValue::Text(t) if norm(t) == "default" => Ok(None),
        other => Err(wrong_type(name, "a positive integer or `default`", other)),
    }
}

fn boolean(name: &str, v: &PropertyValue) -> Result<bool, Error> {
    match v {
        PropertyValue::Bool(b) => Ok(*b),
        other => Err(wrong_type(name, "a boolean", other)),
    }
}

impl ConnectionProperties {
    /// The read-only properties, which [`set`](Self::set) refuses by name.
    pub const READ_ONLY: [&'static str; 4] = [
        "connState",
        "canSend",
        "canReceive",
        "singularTransmissionMsgMaxLen",
    ];

    /// Set a property by RFC name (`connTimeout`, `tcp.userTimeoutValue`, ...).
    pub fn set(&mut self, name: &str, value: impl Into<PropertyValue>) -> Result<(), Error> {
        self.set_value(name, value.into())
    }

    /// [`set`](Self::set), as a builder.
    pub fn with(mut self, name: &str, value: impl Into<PropertyValue>) -> Result<Self, Error> {
        self.set(name, value)?;
        Ok(self)
    }

    // One copy in the program, whatever the callers' value types.
    fn set_value(&mut self, name: &str, v: PropertyValue) -> Result<(), Error> {
        let n = norm(name);
        match n.as_str() {
            "recvchecksumlen" => {
                self.recv_checksum_len = match &v {
                    PropertyValue::Integer(b) => {
                        ChecksumCoverage::Bytes(u32::try_from(*b).map_err(|_| {
                            Error::invalid_configuration(format!(
                                "recvChecksumLen {b} is too large"
                            ))
                        })?)
                    }
                    PropertyValue::Text(t) if norm(t) == "fullcoverage" => ChecksumCoverage::Full,
                    other => return Err(wrong_type(name, "an integer or `fullCoverage`", other)),
                }
            }
            "connpriority" => {
                let p = integer(name, &v)?;
                self.conn_priority = u32::try_from(p).map_err(|_| {
                    Error::invalid_configuration(format!("connPriority {p} is too large"))
                })?;
            }
            "conntimeout" => self.conn_timeout = duration(name, &v)?,
            "keepalivetimeout" => self.keep_alive_timeout = duration(name, &v)?,
            "connscheduler" => {
                let PropertyValue::Text(t) = &v else {
                    return Err(wrong_type(name, "a scheduler name", &v));
                };
                self.conn_scheduler = match norm(t).as_str() {
                    "firstcomefirstserved" | "fcfs" => ConnScheduler::FirstComeFirstServed,
                    "roundrobin" => ConnScheduler::RoundRobin,
                    "roundrobinperpacket" => ConnScheduler::RoundRobinPerPacket,
                    "fairbandwidth" => ConnScheduler::FairBandwidth,
                    "weightedfairqueueing" | "wfq" => ConnScheduler::WeightedFairQueueing,
                    _ => return Err(Error::invalid_configuration(format!(
                        "unknown connScheduler `{t}`; known: firstComeFirstServed, roundRobin, roundRobinPerPacket, fairBandwidth, weightedFairQueueing"
                    ))),
                };
            }
            "conncapacityprofile" => {
                let PropertyValue::Text(t) = &v else {
                    return Err(wrong_type(name, "a capacity profile name", &v));
                };
                self.conn_capacity_profile = CapacityProfile::parse(t)?;
            }
            "multipathpolicy" => {
                let PropertyValue::Text(t) = &v else {
                    return Err(wrong_type(name, "handover, interactive or aggregate", &v));
                };
                self.multipath_policy = match norm(t).as_str() {
                    "handover" => MultipathPolicy::Handover,
                    "interactive" => MultipathPolicy::Interactive,
                    "aggregate" => MultipathPolicy::Aggregate,
                    _ => {
                        return Err(Error::invalid_configuration(format!(
                            "unknown multipathPolicy `{t}`; known: handover, interactive, aggregate"
                        )))
                    }
                };
            }
            "minsendrate" => self.min_send_rate = rate(name, &v)?,
            "minrecvrate" => self.min_recv_rate = rate(name, &v)?,
            "maxsendrate" => self.max_send_rate = rate(name, &v)?,
            "maxrecvrate" => self.max_recv_rate = rate(name, &v)?,
            "groupconnlimit" => self.group_conn_limit = rate(name, &v)?,
            "isolatesession" => self.isolate_session = boolean(name, &v)?,
            "recvmsgmaxlen" => self.recv_msg_max_len = msg_max_len(name, &v)?,
            "sendmsgmaxlen" => self.send_msg_max_len = msg_max_len(name, &v)?,
            "tcp.usertimeoutvalue" => self.tcp.user_timeout_value = duration(name, &v)?,
            "tcp.usertimeoutenabled" => self.tcp.user_timeout_enabled = boolean(name, &v)?,
            "tcp.usertimeoutchangeable" => self.tcp.user_timeout_changeable = boolean(name, &v)?,
            _ if Self::READ_ONLY.iter().any(|r| norm(r) == n) => {
                return Err(Error::invalid_configuration(format!(
                    "`{name}` is a read-only Connection Property (RFC 9622 §8.1.11)"
                )))
            }
            _ => {
                return Err(Error::invalid_configuration(format!(
                    "unknown Connection Property `{name}`"
                )))
            }
        }
        self.validate()
    }

    /// Check values against each other (min rates not above max rates).
    pub fn validate(&self) -> Result<(), Error> {
        for (dir, min, max) in [
            ("send", self.min_send_rate, self.max_send_rate),
            ("recv", self.min_recv_rate, self.max_recv_rate),
        ] {
            if let (Some(lo), Some(hi)) = (min, max) {
                if lo > hi {
                    return Err(Error::invalid_configuration(format!(
                        "min{}Rate {lo} is above max{}Rate {hi}",
                        capitalise(dir),
                        capitalise(dir)
                    )));
                }
            }
        }
        Ok(())
    }
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

impl std::str::FromStr for CapacityProfile {
    type Err = Error;

    /// The same as [`CapacityProfile::parse`], so `"...".parse::<CapacityProfile>()` works.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CapacityProfile::parse(s)
    }
}
