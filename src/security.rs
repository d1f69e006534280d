//! Security Parameters (RFC 9622 §6.3).
//!
//! Security is on by default: a Preconnection with [`SecurityParameters::new`]
//! only selects stacks that authenticate and encrypt. Plaintext needs
//! [`SecurityParameters::disabled`], chosen explicitly by the application;
//! [`SecurityParameters::opportunistic`] races secure stacks first and lets
//! plaintext ones follow. Nothing ever falls back to a weaker protocol on its own
//! (RFC 9621 §3.3).
//!
//! Natively, TLS over TCP (rustls) is raced when security is required or
//! opportunistic. Certificate verification is on by default: the server's
//! chain must lead to a root of the bundled Mozilla set (webpki-roots) or of
//! [`SecurityParameters::trusted_ca`], and must be valid for the server name.
//! A [pin](SecurityParameters::pinned_server_certificate) is the explicit way
//! to trust a certificate that no CA issued (a self-signed one). There is no
//! knob that turns verification off while claiming security: unauthenticated
//! encryption is what [`SecurityParameters::opportunistic`] means.

use crate::capability::SecurityProtocol;
use crate::error::Error;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};
use std::fmt;
use std::sync::Arc;

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

/// A local identity (`serverCertificate` / `clientCertificate`): a PEM
/// certificate chain (leaf first) and, normally, its PEM private key.
///
/// An identity without a private key ([`Identity::from_pem_chain`]) needs an
/// [identity challenge callback](SecurityParameters::set_identity_challenge_callback)
/// to perform the private-key operation.
#[derive(Clone, PartialEq, Eq)]
pub struct Identity {
    chain_pem: String,
    key_pem: Option<String>,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pin = self.leaf_sha256().map(|p| hex(&p)).unwrap_or_default();
        f.debug_struct("Identity")
            .field("leaf_sha256", &pin)
            .field("has_private_key", &self.key_pem.is_some())
            .finish()
    }
}

/// Parse every certificate of a PEM bundle; the error names what is wrong.
pub(crate) fn parse_pem_certificates(
    pem: &str,
    what: &str,
) -> Result<Vec<CertificateDer<'static>>, Error> {
    let mut out = Vec::new();
    for (i, c) in CertificateDer::pem_slice_iter(pem.as_bytes()).enumerate() {
        match c {
            Ok(c) => out.push(c),
            Err(e) => {
                return Err(Error::invalid_configuration(format!(
                    "{what}: PEM certificate {} is malformed: {e}",
                    i + 1
                )))
            }
        }
    }
    if out.is_empty() {
        return Err(Error::invalid_configuration(format!(
            "{what}: no `-----BEGIN CERTIFICATE-----` block found"
        )));
    }
    Ok(out)
}

/// Parse a PEM private key (PKCS#8, PKCS#1 RSA or SEC1 EC).
pub(crate) fn parse_pem_private_key(pem: &str) -> Result<PrivateKeyDer<'static>, Error> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|e| {
        Error::invalid_configuration(format!(
            "private key: no usable PEM private key (PKCS#8 `PRIVATE KEY`, `RSA PRIVATE KEY` or `EC PRIVATE KEY`): {e}"
        ))
    })
}

impl Identity {
    /// An identity from a PEM certificate chain (leaf first) and a PEM
    /// private key. Fails, naming the problem, if the chain has no
    /// certificate or a malformed one, or the key is missing or malformed.
    pub fn from_pem(chain_pem: &str, key_pem: &str) -> Result<Identity, Error> {
        parse_pem_certificates(chain_pem, "certificate chain")?;
        parse_pem_private_key(key_pem)?;
        Ok(Identity {
            chain_pem: chain_pem.to_string(),
            key_pem: Some(key_pem.to_string()),
        })
    }

    /// An identity whose private key is not available to postsocket: the
    /// private-key operation is done by the identity challenge callback
    /// (for example in an HSM). Fails if the chain is malformed.
    pub fn from_pem_chain(chain_pem: &str) -> Result<Identity, Error> {
        parse_pem_certificates(chain_pem, "certificate chain")?;
        Ok(Identity {
            chain_pem: chain_pem.to_string(),
            key_pem: None,
        })
    }

    /// The PEM certificate chain, leaf first.
    pub fn chain_pem(&self) -> &str {
        &self.chain_pem
    }

    /// The PEM private key, if the identity has one.
    pub fn key_pem(&self) -> Option<&str> {
        self.key_pem.as_deref()
    }

    /// SHA-256 of the leaf certificate's DER: the value a peer pins.
    pub fn leaf_sha256(&self) -> Result<[u8; 32], Error> {
        certificate_sha256(&self.chain_pem)
    }
}

/// SHA-256 of the DER of the first certificate in a PEM bundle: the pin
/// format of [`SecurityParameters::pinned_server_certificate`] (the same hash
/// as WebTransport's `serverCertificateHashes`).
pub fn certificate_sha256(cert_pem: &str) -> Result<[u8; 32], Error> {
    let certs = parse_pem_certificates(cert_pem, "certificate")?;
    Ok(Sha256::digest(certs[0].as_ref()).into())
}

/// Parse a SHA-256 pin written in hex (64 digits; `:` and spaces between
/// bytes are allowed, as `openssl x509 -fingerprint -sha256` prints them).
pub fn parse_sha256_hex(text: &str) -> Result<[u8; 32], Error> {
    let digits: String = text
        .chars()
        .filter(|c| !matches!(c, ':' | ' ' | '\t'))
        .collect();
    let bad = || {
        Error::invalid_configuration(format!(
            "`{text}` is not a SHA-256 hash: expected 64 hex digits"
        ))
    };
    if digits.len() != 64 || !digits.is_ascii() {
        return Err(bad());
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&digits[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
    }
    Ok(out)
}

/// Lower-case hex of bytes (how pins are printed).
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What the trust verification callback sees: the peer's certificate chain
/// and the name it was verified for.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct TrustContext {
    /// The peer's certificates as DER, leaf first.
    pub chain: Vec<Vec<u8>>,
    /// The server name the certificate was verified for (host name or IP
    /// address as text). Empty when a server verifies a client.
    pub server_name: String,
}

/// A trust verification callback: `Err(message)` fails the handshake.
pub type TrustVerificationCallback = Arc<dyn Fn(&TrustContext) -> Result<(), String> + Send + Sync>;

/// An identity challenge callback: signs the message with the identity's
/// private key and returns the signature.
pub type IdentityChallengeCallback = Arc<dyn Fn(&[u8]) -> Result<Vec<u8>, String> + Send + Sync>;

/// The SecurityParameters object.
#[derive(Clone)]
pub struct SecurityParameters {
    mode: SecurityMode,
    /// `allowedSecurityProtocols`: empty means the best available (TLS 1.3
    /// and 1.2 for TLS over TCP).
    pub allowed_security_protocols: Vec<SecurityProtocolVersion>,
    /// `alpn`: application protocols to offer (client) or accept (server),
    /// in order of preference. A server with a non-empty list refuses a
    /// client that offers none of them (`no_application_protocol`), or
    /// offers no ALPN at all; a client with one refuses a server that
    /// chooses none.
    pub alpn: Vec<String>,
    /// `serverCertificate`: the identity a Listener presents. A TLS Listener
    /// needs one; the first is used.
    pub server_certificate: Vec<Identity>,
    /// `clientCertificate`: the identity a client presents when the server
    /// asks for one; the first is used.
    pub client_certificate: Vec<Identity>,
    /// `pinnedServerCertificate`: SHA-256 hashes of leaf certificate DER
    /// (see [`certificate_sha256`], [`parse_sha256_hex`]). When non-empty,
    /// the server's leaf must match one of them, or the handshake fails. A
    /// matching pin is sufficient trust for that certificate (it may be
    /// self-signed, and its names are not checked), but its validity dates
    /// still are. Not for WebRTC: Rendezvous refuses it (its DTLS peer is
    /// known by the fingerprint in the signaled SDP).
    pub pinned_server_certificate: Vec<[u8; 32]>,
    /// Extra trusted root certificates (PEM). A client trusts them in
    /// addition to the bundled roots (or instead, with
    /// `use_system_roots = false`); a Listener with
    /// `require_client_certificate` verifies clients against them.
    pub trusted_ca: Vec<String>,
    /// Trust the bundled Mozilla root set (webpki-roots) when verifying
    /// servers. Default `true`.
    pub use_system_roots: bool,
    /// The name to verify the server certificate for and to send as SNI.
    /// Default: the RemoteEndpoint's host name, or its IP address.
    pub server_name: Option<String>,
    /// A Listener requires and verifies a client certificate (against
    /// `trusted_ca`). Default `false`. Not with opportunistic security,
    /// whose plaintext stacks would take clients without one (Listen
    /// refuses the pair).
    pub require_client_certificate: bool,
    /// `maxCachedSessions`: how many resumable sessions to keep (client:
    /// per server name set; server: session cache size). `None`: 256.
    /// `Some(0)` turns session resumption off.
    pub max_cached_sessions: Option<usize>,
    /// `cachedSessionLifetimeSeconds`: a client does not resume sessions
    /// older than this; a server resumes none older than this (its tickets
    /// say so too). `Some(0)` turns resumption off. `None`: the protocol
    /// default (client: the server's ticket lifetime; a Listener: while its
    /// session cache, `maxCachedSessions`, keeps the session).
    pub cached_session_lifetime_seconds: Option<u64>,
    trust_verification: Option<TrustVerificationCallback>,
    identity_challenge: Option<IdentityChallengeCallback>,
}

impl fmt::Debug for SecurityParameters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cb = |c: bool| if c { Some("<callback>") } else { None };
        f.debug_struct("SecurityParameters")
            .field("mode", &self.mode)
            .field(
                "allowed_security_protocols",
                &self.allowed_security_protocols,
            )
            .field("alpn", &self.alpn)
            .field("server_certificate", &self.server_certificate)
            .field("client_certificate", &self.client_certificate)
            .field(
                "pinned_server_certificate",
                &self
                    .pinned_server_certificate
                    .iter()
                    .map(|p| hex(p))
                    .collect::<Vec<_>>(),
            )
            .field("trusted_ca", &self.trusted_ca.len())
            .field("use_system_roots", &self.use_system_roots)
            .field("server_name", &self.server_name)
            .field(
                "require_client_certificate",
                &self.require_client_certificate,
            )
            .field("max_cached_sessions", &self.max_cached_sessions)
            .field(
                "cached_session_lifetime_seconds",
                &self.cached_session_lifetime_seconds,
            )
            .field("trust_verification", &cb(self.trust_verification.is_some()))
            .field("identity_challenge", &cb(self.identity_challenge.is_some()))
            .finish()
    }
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
            server_certificate: Vec::new(),
            client_certificate: Vec::new(),
            pinned_server_certificate: Vec::new(),
            trusted_ca: Vec::new(),
            use_system_roots: true,
            server_name: None,
            require_client_certificate: false,
            max_cached_sessions: None,
            cached_session_lifetime_seconds: None,
            trust_verification: None,
            identity_challenge: None,
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
    ///
    /// TLS is raced first and plain TCP after it. The TLS stack encrypts but
    /// does **not authenticate** the server: its certificate is not verified
    /// (an active attacker can impersonate it). This is RFC 9622's
    /// "unauthenticated security if available"; use [`SecurityParameters::new`]
    /// whenever the peer's identity matters.
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

    /// Set the trust verification callback, for server certificates (the
    /// client side of TLS). It runs after the built-in verification
    /// succeeded (CA chain and name, or pin; with opportunistic security
    /// there is none, and the callback is the only check) with the server's
    /// chain and the server name; `Err(message)` fails the handshake with
    /// that message. It can only add checks, never accept a certificate the
    /// built-in verification refused. Blocks the handshake while it runs,
    /// so keep it short. Inherited by Clone. A Listener verifies client
    /// certificates with `require_client_certificate` and `trusted_ca`.
    pub fn set_trust_verification_callback(
        &mut self,
        callback: impl Fn(&TrustContext) -> Result<(), String> + Send + Sync + 'static,
    ) -> &mut Self {
        self.trust_verification = Some(Arc::new(callback));
        self
    }

    /// The trust verification callback, if set.
    pub fn trust_verification_callback(&self) -> Option<&TrustVerificationCallback> {
        self.trust_verification.as_ref()
    }

    /// Set the identity challenge callback: the private-key operation of the
    /// local identity (client certificate, or a Listener's server
    /// certificate), for keys postsocket cannot read (HSM, agent). It gets
    /// the message to sign and returns the signature in the TLS encoding of
    /// the identity's key type: ECDSA P-256 with SHA-256 or P-384 with
    /// SHA-384 (ASN.1 DER signature), Ed25519, or RSA-PSS with SHA-256 for
    /// RSA keys. When set, it replaces the identity's PEM private key.
    pub fn set_identity_challenge_callback(
        &mut self,
        callback: impl Fn(&[u8]) -> Result<Vec<u8>, String> + Send + Sync + 'static,
    ) -> &mut Self {
        self.identity_challenge = Some(Arc::new(callback));
        self
    }

    /// The identity challenge callback, if set.
    pub fn identity_challenge_callback(&self) -> Option<&IdentityChallengeCallback> {
        self.identity_challenge.as_ref()
    }

    /// A key that differs whenever two parameter sets could verify or
    /// authenticate differently (callbacks by identity): configurations and
    /// session caches are shared only between equal keys.
    // The browser's TLS is the browser's; natively only the TLS stacks use it.
    #[cfg_attr(any(web, not(feature = "tls")), allow(dead_code))]
    pub(crate) fn cache_key(&self) -> String {
        let ptr = |c: Option<usize>| c.map(|p| format!("{p:x}")).unwrap_or_default();
        format!(
            "{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{}|{}",
            self.mode,
            self.allowed_security_protocols,
            self.alpn,
            // The private keys by their hash: the key is kept in a cache
            // after the application dropped its parameters.
            self.server_certificate
                .iter()
                .chain(&self.client_certificate)
                .map(|i| {
                    let key = i
                        .key_pem
                        .as_deref()
                        .map(|k| hex(&Sha256::digest(k.as_bytes())));
                    (&i.chain_pem, key)
                })
                .collect::<Vec<_>>(),
            self.pinned_server_certificate,
            (
                &self.trusted_ca,
                self.use_system_roots,
                self.require_client_certificate,
                self.max_cached_sessions,
                self.cached_session_lifetime_seconds,
                self.server_certificate.len(),
            ),
            ptr(self
                .trust_verification
                .as_ref()
                .map(|c| Arc::as_ptr(c) as *const () as usize)),
            ptr(self
                .identity_challenge
                .as_ref()
                .map(|c| Arc::as_ptr(c) as *const () as usize)),
        )
    }

    /// The parameters set here that WebRTC cannot apply: its DTLS peer is
    /// authenticated by the certificate fingerprint the signaling carries
    /// in the SDP, with certificates each peer makes itself, so pins, trust
    /// roots, a trust callback and identities would be ignored.
    pub(crate) fn not_for_webrtc(&self) -> Vec<&'static str> {
        let set = [
            (
                !self.pinned_server_certificate.is_empty(),
                "pinned_server_certificate",
            ),
            (!self.trusted_ca.is_empty(), "trusted_ca"),
            (
                self.trust_verification.is_some(),
                "the trust verification callback",
            ),
            (!self.server_certificate.is_empty(), "server_certificate"),
            (!self.client_certificate.is_empty(), "client_certificate"),
            (
                self.require_client_certificate,
                "require_client_certificate",
            ),
        ];
        set.into_iter()
            .filter(|(on, _)| *on)
            .map(|(_, n)| n)
            .collect()
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

    /// Set a parameter by RFC name: `alpn`, `allowedSecurityProtocols`,
    /// `pinnedServerCertificate` (hex SHA-256 values), `trustedCA` (PEM
    /// texts), `serverName` (one value, or none to reset),
    /// `maxCachedSessions`, `cachedSessionLifetimeSeconds` (one integer, or
    /// none to reset), `requireClientCertificate` (`true`/`false`).
    /// Certificates with keys are set with [`Identity`] on
    /// `server_certificate` / `client_certificate`.
    pub fn set(&mut self, name: &str, values: &[&str]) -> Result<(), Error> {
        let one_int = |values: &[&str]| -> Result<Option<u64>, Error> {
            match values {
                [] => Ok(None),
                [v] => v.trim().parse::<u64>().map(Some).map_err(|_| {
                    Error::invalid_configuration(format!(
                        "security parameter `{name}`: `{v}` is not a non-negative integer"
                    ))
                }),
                _ => Err(Error::invalid_configuration(format!(
                    "security parameter `{name}` takes one value, got {}",
                    values.len()
                ))),
            }
        };
        match crate::properties::norm_name(name).as_str() {
            "alpn" => {
                self.alpn = values.iter().map(|s| s.to_string()).collect();
                Ok(())
            }
            "pinnedservercertificate" => {
                self.pinned_server_certificate = values
                    .iter()
                    .map(|v| parse_sha256_hex(v))
                    .collect::<Result<_, _>>()?;
                Ok(())
            }
            "trustedca" => {
                for v in values {
                    parse_pem_certificates(v, "trustedCA")?;
                }
                self.trusted_ca = values.iter().map(|s| s.to_string()).collect();
                Ok(())
            }
            "servername" => {
                self.server_name = match values {
                    [] => None,
                    [v] => Some(v.to_string()),
                    _ => {
                        return Err(Error::invalid_configuration(
                            "security parameter `serverName` takes one value",
                        ))
                    }
                };
                Ok(())
            }
            "maxcachedsessions" => {
                self.max_cached_sessions = one_int(values)?.map(|v| v as usize);
                Ok(())
            }
            "cachedsessionlifetimeseconds" => {
                self.cached_session_lifetime_seconds = one_int(values)?;
                Ok(())
            }
            "requireclientcertificate" => {
                self.require_client_certificate =
                    match values {
                        ["true"] | [] => true,
                        ["false"] => false,
                        _ => return Err(Error::invalid_configuration(
                            "security parameter `requireClientCertificate` takes `true` or `false`",
                        )),
                    };
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

    /// [`set`](Self::set), as a builder:
    /// `SecurityParameters::new().with("serverName", &["example.com"])?`.
    pub fn with(mut self, name: &str, values: &[&str]) -> Result<Self, Error> {
        self.set(name, values)?;
        Ok(self)
    }

    /// [`set_trust_verification_callback`](Self::set_trust_verification_callback), as a builder.
    pub fn with_trust_verification_callback(
        mut self,
        callback: impl Fn(&TrustContext) -> Result<(), String> + Send + Sync + 'static,
    ) -> Self {
        self.set_trust_verification_callback(callback);
        self
    }

    /// [`set_identity_challenge_callback`](Self::set_identity_challenge_callback), as a builder.
    pub fn with_identity_challenge_callback(
        mut self,
        callback: impl Fn(&[u8]) -> Result<Vec<u8>, String> + Send + Sync + 'static,
    ) -> Self {
        self.set_identity_challenge_callback(callback);
        self
    }
}

// rcgen makes the certificates: native only.
#[cfg(all(test, native))]
mod tests {
    use super::*;

    /// The configuration caches' key names an identity's private key by
    /// its hash, never by the key itself, and still tells keys apart.
    #[test]
    fn cache_keys_hold_no_private_key() {
        let identity = || {
            let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
            let key = ck.signing_key.serialize_pem();
            (Identity::from_pem(&ck.cert.pem(), &key).unwrap(), key)
        };
        let (a, a_key) = identity();
        let (b, _) = identity();
        let mut s = SecurityParameters::new();
        s.server_certificate = vec![a];
        let with_a = s.cache_key();
        let body = a_key.lines().nth(1).unwrap();
        assert!(!with_a.contains(body), "{with_a}");
        s.server_certificate = vec![b];
        assert_ne!(with_a, s.cache_key());
    }
}
