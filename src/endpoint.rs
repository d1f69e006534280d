//! Local and Remote Endpoints (RFC 9622 §6.1).
//!
//! An Endpoint holds at most one identifier of each kind; two IP addresses are
//! two Endpoints, which become two candidates.

use crate::capability::StackId;
use crate::error::Error;
use std::fmt;
use std::net::{IpAddr, SocketAddr};

/// The identifiers an endpoint can carry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
/// (Names as `Box<str>`, not `String`: every Connection keeps its
/// RemoteEndpoint, most with none of them.)
struct Identifiers {
    host_name: Option<Box<str>>,
    port: Option<u16>,
    service: Option<Box<str>>,
    ip: Option<IpAddr>,
    interface: Option<Box<str>>,
    protocol: Option<StackId>,
}

macro_rules! endpoint {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Default, PartialEq, Eq)]
        pub struct $name {
            ids: Identifiers,
        }

        impl $name {
            /// `NewLocalEndpoint()` / `NewRemoteEndpoint()`: an endpoint with no identifiers.
            pub fn new() -> Self {
                Self::default()
            }

            /// `WithHostName(name)`; a second host name is an error (use another endpoint).
            pub fn with_host_name(mut self, name: impl Into<String>) -> Result<Self, Error> {
                let name = name.into();
                if name.is_empty() {
                    return Err(Error::invalid_configuration("empty host name"));
                }
                // A literal address given as a host name is an IP address.
                if let Ok(ip) = name.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() {
                    return self.with_ip_address(ip);
                }
                set_once(&mut self.ids.host_name, name.into(), "host name")?;
                Ok(self)
            }

            /// `WithPort(port)`.
            pub fn with_port(mut self, port: u16) -> Result<Self, Error> {
                set_once(&mut self.ids.port, port, "port")?;
                Ok(self)
            }

            /// `WithService("https")`: an IANA service name, resolved to a port.
            pub fn with_service(mut self, service: impl Into<String>) -> Result<Self, Error> {
                let service = service.into();
                if service_port(&service).is_none() {
                    return Err(Error::invalid_configuration(format!(
                        "unknown service `{service}`; known: {}",
                        SERVICES.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
                    )));
                }
                set_once(&mut self.ids.service, service.into(), "service")?;
                Ok(self)
            }

            /// `WithIPAddress(ip)`.
            pub fn with_ip_address(mut self, ip: IpAddr) -> Result<Self, Error> {
                set_once(&mut self.ids.ip, ip, "IP address")?;
                Ok(self)
            }

            /// An IP address and port at once.
            pub fn with_socket_addr(self, addr: SocketAddr) -> Result<Self, Error> {
                self.with_ip_address(addr.ip())?.with_port(addr.port())
            }

            /// `WithInterface("eth0")`.
            pub fn with_interface(mut self, interface: impl Into<String>) -> Result<Self, Error> {
                let interface: String = interface.into();
                set_once(&mut self.ids.interface, interface.into(), "interface")?;
                Ok(self)
            }

            /// `WithProtocol(stack)` (§6.1.3): this endpoint applies to one stack only.
            pub fn with_protocol(mut self, stack: StackId) -> Result<Self, Error> {
                set_once(&mut self.ids.protocol, stack, "protocol")?;
                Ok(self)
            }

            /// The host name, if set.
            pub fn host_name(&self) -> Option<&str> {
                self.ids.host_name.as_deref()
            }
            /// The IP address, if set.
            pub fn ip_address(&self) -> Option<IpAddr> {
                self.ids.ip
            }
            /// The interface, if set.
            pub fn interface(&self) -> Option<&str> {
                self.ids.interface.as_deref()
            }
            /// The service name, if set.
            pub fn service(&self) -> Option<&str> {
                self.ids.service.as_deref()
            }
            /// The protocol this endpoint is specific to, if any.
            pub fn protocol(&self) -> Option<StackId> {
                self.ids.protocol
            }
            /// The port: the explicit port, or the service's well-known port.
            pub fn port(&self) -> Option<u16> {
                self.ids.port.or_else(|| self.ids.service.as_deref().and_then(service_port))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match (&self.ids.host_name, self.ids.ip) {
                    (Some(h), _) => write!(f, "{h}")?,
                    (None, Some(IpAddr::V6(ip))) => write!(f, "[{ip}]")?,
                    (None, Some(ip)) => write!(f, "{ip}")?,
                    (None, None) => write!(f, "*")?,
                }
                if let Some(p) = self.port() {
                    write!(f, ":{p}")?;
                }
                if let Some(i) = &self.ids.interface {
                    write!(f, "%{i}")?;
                }
                Ok(())
            }
        }
    };
}

endpoint!(
    /// Where a Connection comes from (RFC 9622 §6.1): local address, port and interface.
    LocalEndpoint
);
endpoint!(
    /// Whom a Connection talks to (RFC 9622 §6.1): host name or IP address, and port or service.
    RemoteEndpoint
);

impl RemoteEndpoint {
    /// Parse `host:port`, `ip:port` or `[v6]:port` into a RemoteEndpoint.
    pub fn parse(s: &str) -> Result<Self, Error> {
        if let Ok(addr) = s.parse::<SocketAddr>() {
            return Self::new().with_socket_addr(addr);
        }
        let (host, port) = s
            .rsplit_once(':')
            .ok_or_else(|| Error::invalid_configuration(format!("`{s}` is not host:port")))?;
        let port: u16 = port.parse().map_err(|_| {
            Error::invalid_configuration(format!("`{port}` in `{s}` is not a port"))
        })?;
        Self::new().with_host_name(host)?.with_port(port)
    }
}

fn set_once<T: PartialEq + fmt::Debug>(
    slot: &mut Option<T>,
    v: T,
    what: &str,
) -> Result<(), Error> {
    match slot {
        Some(old) if *old != v => Err(Error::invalid_configuration(format!(
            "an endpoint holds one {what}; it already has {old:?}, so {v:?} needs an endpoint of its own (RFC 9622 §6.1)"
        ))),
        _ => {
            *slot = Some(v);
            Ok(())
        }
    }
}

/// IANA service names postsocket knows without a lookup.
const SERVICES: &[(&str, u16)] = &[
    ("http", 80),
    ("https", 443),
    ("echo", 7),
    ("ssh", 22),
    ("smtp", 25),
    ("domain", 53),
    ("ntp", 123),
    ("imaps", 993),
    ("ws", 80),
    ("wss", 443),
];

fn service_port(name: &str) -> Option<u16> {
    SERVICES
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, p)| *p)
}

impl std::str::FromStr for RemoteEndpoint {
    type Err = Error;

    /// The same as [`RemoteEndpoint::parse`], so `"...".parse::<RemoteEndpoint>()` works.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RemoteEndpoint::parse(s)
    }
}
