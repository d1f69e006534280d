//! Security Parameters (RFC 9622 §6.3).
//!
//! Security is on by default: a Preconnection with [`SecurityParameters::new`]
//! only selects stacks that authenticate and encrypt. Plaintext needs
//! [`SecurityParameters::disabled`], chosen explicitly by the application;
//! [`SecurityParameters::opportunistic`] races secure stacks first and lets
//! plaintext ones follow. Nothing ever falls back to a weaker protocol on its own
//! (RFC 9621 §3.3).

use crate::capability::SecurityProtocol;
use crate::error::Error;

/// Which security the application asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecurityMode {
    /// Authenticated encryption is required (the default).
    Required,
    /// Unauthenticated or absent security is acceptable (`NewOpportunisticSecurityParameters`).
    Opportunistic,
    /// No security (`NewDisabledSecurityParameters`).
    Disabled,
}

/// A security protocol version the application allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SecurityProtocolVersion {
    /// TLS 1.2.
    Tls12,
    /// TLS 1.3.
    Tls13,
    /// DTLS 1.2 (WebRTC).
    Dtls12,
}

/// The SecurityParameters object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecurityParameters {
    mode: SecurityMode,
    /// `allowedSecurityProtocols`: empty means the best available.
    pub allowed_security_protocols: Vec<SecurityProtocolVersion>,
    /// `alpn`: application protocols to offer, in order.
    pub alpn: Vec<String>,
}

impl Default for SecurityParameters {
    fn default() -> Self {
        SecurityParameters::new()
    }
}

impl SecurityParameters {
    /// `NewSecurityParameters()`: security required, best available protocols.
    pub fn new() -> Self {
        SecurityParameters {
            mode: SecurityMode::Required,
            allowed_security_protocols: Vec::new(),
            alpn: Vec::new(),
        }
    }

    /// `NewDisabledSecurityParameters()`: plaintext stacks only.
    pub fn disabled() -> Self {
        SecurityParameters {
            mode: SecurityMode::Disabled,
            ..Self::new()
        }
    }

    /// `NewOpportunisticSecurityParameters()`: secure stacks first, plaintext allowed.
    pub fn opportunistic() -> Self {
        SecurityParameters {
            mode: SecurityMode::Opportunistic,
            ..Self::new()
        }
    }

    /// The mode.
    pub fn mode(&self) -> SecurityMode {
        self.mode
    }

    /// Whether a stack with this security protocol may be raced, and if not, why.
    pub fn admits(&self, security: SecurityProtocol) -> Result<(), String> {
        match (self.mode, security) {
            (SecurityMode::Disabled, SecurityProtocol::None) => Ok(()),
            (SecurityMode::Disabled, _) => {
                Err("security is disabled, so secure stacks are not raced".into())
            }
            (SecurityMode::Required, SecurityProtocol::None) => Err(
                "offers no security, and SecurityParameters require it (use SecurityParameters::disabled() for plaintext)".into(),
            ),
            (_, SecurityProtocol::None) => Ok(()),
            (_, p) => {
                let allowed = &self.allowed_security_protocols;
                let ok = allowed.is_empty()
                    || match p {
                        SecurityProtocol::Tls => allowed.iter().any(|v| {
                            matches!(v, SecurityProtocolVersion::Tls12 | SecurityProtocolVersion::Tls13)
                        }),
                        SecurityProtocol::Dtls => allowed.contains(&SecurityProtocolVersion::Dtls12),
                        SecurityProtocol::None => true,
                    };
                if ok {
                    Ok(())
                } else {
                    Err(format!("{p:?} is not in allowedSecurityProtocols {allowed:?}"))
                }
            }
        }
    }

    /// Set a parameter by RFC name (`alpn`, `allowedSecurityProtocols`).
    pub fn set(&mut self, name: &str, values: &[&str]) -> Result<(), Error> {
        match crate::properties::norm_name(name).as_str() {
            "alpn" => {
                self.alpn = values.iter().map(|s| s.to_string()).collect();
                Ok(())
            }
            "allowedsecurityprotocols" => {
                let mut out = Vec::new();
                for v in values {
                    out.push(match crate::properties::norm_name(v).as_str() {
                        "tls12" | "tls1.2" => SecurityProtocolVersion::Tls12,
                        "tls13" | "tls1.3" => SecurityProtocolVersion::Tls13,
                        "dtls12" | "dtls1.2" => SecurityProtocolVersion::Dtls12,
                        _ => {
                            return Err(Error::invalid_configuration(format!(
                                "unknown security protocol `{v}`; known: tls1.2, tls1.3, dtls1.2"
                            )))
                        }
                    });
                }
                self.allowed_security_protocols = out;
                Ok(())
            }
            _ => Err(Error::invalid_configuration(format!(
                "unknown security parameter `{name}`"
            ))),
        }
    }
}
