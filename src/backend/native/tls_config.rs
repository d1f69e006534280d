//! rustls configuration from SecurityParameters, shared by TLS over TCP and
//! QUIC. The crypto provider (ring) is installed explicitly on every config:
//! nothing depends on a process-wide default provider.
//!
//! Configurations are cached per distinct SecurityParameters (see
//! `SecurityParameters::cache_key`), so connections made with the same
//! parameters share one session cache and can resume sessions, while
//! parameters that verify differently never share cached sessions.

use crate::backend::SessionScope;
use crate::error::Error;
use crate::security::{
    hex, parse_pem_certificates, parse_pem_private_key, Identity, IdentityChallengeCallback,
    SecurityMode, SecurityParameters, SecurityProtocolVersion, TrustContext,
    TrustVerificationCallback,
};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ClientSessionStore, Tls12ClientSessionValue, Tls13ClientSessionValue};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::sign::{CertifiedKey, Signer, SigningKey};
use rustls::{
    CertificateError, DigitallySignedStruct, NamedGroup, OtherError, RootCertStore,
    SignatureAlgorithm, SignatureScheme, SupportedProtocolVersion,
};
use sha2::{Digest, Sha256};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Sessions kept when `max_cached_sessions` is not set.
const DEFAULT_CACHED_SESSIONS: usize = 256;
/// At most this many distinct configurations are cached per side.
const MAX_CACHED_CONFIGS: usize = 64;

/// The crypto provider: ring, installed explicitly on every config.
pub(crate) fn provider() -> Arc<CryptoProvider> {
    static P: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    P.get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

fn config_error(what: &str, e: impl std::fmt::Display) -> Error {
    Error::invalid_configuration(format!("{what}: {e}"))
}

/// The TLS versions allowedSecurityProtocols permits.
fn versions(sec: &SecurityParameters) -> Result<Vec<&'static SupportedProtocolVersion>, Error> {
    let allowed = &sec.allowed_security_protocols;
    if allowed.is_empty() {
        return Ok(vec![&rustls::version::TLS13, &rustls::version::TLS12]);
    }
    let mut v = Vec::new();
    if allowed.contains(&SecurityProtocolVersion::Tls13) {
        v.push(&rustls::version::TLS13);
    }
    if allowed.contains(&SecurityProtocolVersion::Tls12) {
        v.push(&rustls::version::TLS12);
    }
    if v.is_empty() {
        return Err(Error::invalid_configuration(format!(
            "allowedSecurityProtocols {allowed:?} contains no TLS version"
        )));
    }
    Ok(v)
}

fn alpn(sec: &SecurityParameters, default_alpn: &[&str]) -> Vec<Vec<u8>> {
    if sec.alpn.is_empty() {
        default_alpn.iter().map(|a| a.as_bytes().to_vec()).collect()
    } else {
        sec.alpn.iter().map(|a| a.as_bytes().to_vec()).collect()
    }
}

fn trusted_roots(sec: &SecurityParameters, with_defaults: bool) -> Result<RootCertStore, Error> {
    let mut roots = RootCertStore::empty();
    if with_defaults {
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    }
    for (i, pem) in sec.trusted_ca.iter().enumerate() {
        for cert in parse_pem_certificates(pem, &format!("trusted_ca[{i}]"))? {
            roots
                .add(cert)
                .map_err(|e| config_error(&format!("trusted_ca[{i}]"), e))?;
        }
    }
    Ok(roots)
}

fn cert_error(message: String) -> rustls::Error {
    struct Msg(String);
    impl std::fmt::Display for Msg {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(&self.0)
        }
    }
    // rustls writes a CertificateError::Other's text with Debug (as QUIC
    // and WebTransport report it): the message itself, not `Msg("...")`
    // with its quotes escaped.
    impl std::fmt::Debug for Msg {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(&self.0)
        }
    }
    impl std::error::Error for Msg {}
    rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(Msg(message)))))
}

// ---------------------------------------------------------------------------
// What a certificate says, read with the x509-cert crate: its validity dates
// and the type of its public key (for clear errors before rustls's own).

/// A certificate time: seconds since the Unix epoch and its text.
struct CertTime {
    unix: i64,
    text: String,
}

pub(crate) fn format_unix(t: i64) -> String {
    let days = t.div_euclid(86_400);
    let secs = t.rem_euclid(86_400);
    // civil_from_days
    let z = days + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

fn parse_certificate(der: &[u8]) -> Option<x509_cert::Certificate> {
    use x509_cert::der::Decode;
    x509_cert::Certificate::from_der(der).ok()
}

fn cert_time(t: &x509_cert::time::Time) -> CertTime {
    let unix = i64::try_from(t.to_unix_duration().as_secs()).unwrap_or(i64::MAX);
    CertTime {
        unix,
        text: format_unix(unix),
    }
}

fn validity(cert_der: &[u8]) -> Option<(CertTime, CertTime)> {
    let v = parse_certificate(cert_der)?.tbs_certificate.validity;
    Some((cert_time(&v.not_before), cert_time(&v.not_after)))
}

/// The fuzz harness: any bytes read as a certificate (dates and key type).
#[cfg(feature = "fuzzing")]
pub(crate) fn fuzz_certificate(der: &[u8]) {
    if let Some((nb, na)) = validity(der) {
        assert!(!nb.text.is_empty() && !na.text.is_empty());
    }
    let _ = key_kind(der);
}

/// The key type of a certificate's public key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyKind {
    EcdsaP256,
    EcdsaP384,
    Ed25519,
    Rsa,
}

fn key_kind(cert_der: &[u8]) -> Option<KeyKind> {
    use x509_cert::der::asn1::ObjectIdentifier as Oid;
    const EC: Oid = Oid::new_unwrap("1.2.840.10045.2.1");
    const P256: Oid = Oid::new_unwrap("1.2.840.10045.3.1.7");
    const P384: Oid = Oid::new_unwrap("1.3.132.0.34");
    const ED25519: Oid = Oid::new_unwrap("1.3.101.112");
    const RSA: Oid = Oid::new_unwrap("1.2.840.113549.1.1.1");
    let alg = parse_certificate(cert_der)?
        .tbs_certificate
        .subject_public_key_info
        .algorithm;
    match alg.oid {
        o if o == EC => match alg.parameters?.decode_as::<Oid>().ok()? {
            c if c == P256 => Some(KeyKind::EcdsaP256),
            c if c == P384 => Some(KeyKind::EcdsaP384),
            _ => None,
        },
        o if o == ED25519 => Some(KeyKind::Ed25519),
        o if o == RSA => Some(KeyKind::Rsa),
        _ => None,
    }
}

// ---------------------------------------------------------------------------
// Identities.

/// A signing key whose private-key operation is the identity challenge callback.
struct CallbackKey {
    kind: KeyKind,
    callback: IdentityChallengeCallback,
}

impl std::fmt::Debug for CallbackKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CallbackKey({:?}, <callback>)", self.kind)
    }
}

impl CallbackKey {
    fn scheme(&self) -> SignatureScheme {
        match self.kind {
            KeyKind::EcdsaP256 => SignatureScheme::ECDSA_NISTP256_SHA256,
            KeyKind::EcdsaP384 => SignatureScheme::ECDSA_NISTP384_SHA384,
            KeyKind::Ed25519 => SignatureScheme::ED25519,
            KeyKind::Rsa => SignatureScheme::RSA_PSS_SHA256,
        }
    }
}

impl SigningKey for CallbackKey {
    fn choose_scheme(&self, offered: &[SignatureScheme]) -> Option<Box<dyn Signer>> {
        let scheme = self.scheme();
        offered.contains(&scheme).then(|| {
            Box::new(CallbackSigner {
                scheme,
                callback: self.callback.clone(),
            }) as Box<dyn Signer>
        })
    }

    fn algorithm(&self) -> SignatureAlgorithm {
        match self.kind {
            KeyKind::EcdsaP256 | KeyKind::EcdsaP384 => SignatureAlgorithm::ECDSA,
            KeyKind::Ed25519 => SignatureAlgorithm::ED25519,
            KeyKind::Rsa => SignatureAlgorithm::RSA,
        }
    }
}

struct CallbackSigner {
    scheme: SignatureScheme,
    callback: IdentityChallengeCallback,
}

impl std::fmt::Debug for CallbackSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CallbackSigner({:?})", self.scheme)
    }
}

impl Signer for CallbackSigner {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, rustls::Error> {
        (self.callback)(message)
            .map_err(|e| rustls::Error::General(format!("identity challenge callback: {e}")))
    }

    fn scheme(&self) -> SignatureScheme {
        self.scheme
    }
}

/// The CertifiedKey of an identity: its PEM key, or the identity challenge callback.
fn certified_key(
    identity: &Identity,
    callback: Option<&IdentityChallengeCallback>,
    what: &str,
) -> Result<Arc<CertifiedKey>, Error> {
    let chain = parse_pem_certificates(identity.chain_pem(), what)?;
    let key: Arc<dyn SigningKey> = match (callback, identity.key_pem()) {
        (Some(cb), _) => {
            let kind = key_kind(&chain[0]).ok_or_else(|| {
                Error::invalid_configuration(format!(
                    "{what}: the identity challenge callback supports ECDSA P-256/P-384, Ed25519 and RSA keys; the certificate's key is none of them"
                ))
            })?;
            Arc::new(CallbackKey {
                kind,
                callback: cb.clone(),
            })
        }
        (None, Some(pem)) => provider()
            .key_provider
            .load_private_key(parse_pem_private_key(pem)?)
            .map_err(|e| config_error(&format!("{what} private key"), e))?,
        (None, None) => {
            return Err(Error::invalid_configuration(format!(
                "{what} has no private key and no identity challenge callback is set"
            )))
        }
    };
    let ck = CertifiedKey::new(chain, key);
    if callback.is_none() {
        if let Err(e @ rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) =
            ck.keys_match()
        {
            return Err(config_error(
                &format!("{what}: the private key does not belong to the leaf certificate"),
                e,
            ));
        }
    }
    Ok(Arc::new(ck))
}

tokio::task_local! {
    /// Set to true while a client handshake runs when the server asks for a
    /// client certificate. A task-local, not a flag in the resolver: rustls
    /// resumes a session only with the very same resolver, so one resolver
    /// serves every connection of a configuration.
    pub(crate) static CLIENT_CERT_ASKED: std::cell::Cell<bool>;
}

/// Presents the client identity, and records whether the server asked for one.
#[derive(Debug)]
pub(crate) struct ClientIdentity {
    key: Option<Arc<CertifiedKey>>,
}

impl rustls::client::ResolvesClientCert for ClientIdentity {
    fn resolve(&self, _hints: &[&[u8]], _schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        let _ = CLIENT_CERT_ASKED.try_with(|asked| asked.set(true));
        self.key.clone()
    }

    fn has_certs(&self) -> bool {
        self.key.is_some()
    }
}

// ---------------------------------------------------------------------------
// Server certificate verification.

/// Verifies a server: pins, or CA chain + name (or nothing for opportunistic
/// security), then the trust verification callback. Handshake signatures are
/// always verified.
struct Verifier {
    opportunistic: bool,
    pins: Vec<[u8; 32]>,
    webpki: Option<Arc<rustls::client::WebPkiServerVerifier>>,
    callback: Option<TrustVerificationCallback>,
    provider: Arc<CryptoProvider>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("opportunistic", &self.opportunistic)
            .field("pins", &self.pins.len())
            .finish()
    }
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if !self.pins.is_empty() {
            let hash: [u8; 32] = Sha256::digest(end_entity.as_ref()).into();
            if !self.pins.contains(&hash) {
                let pins: Vec<String> = self.pins.iter().map(|p| hex(p)).collect();
                return Err(cert_error(format!(
                    "pinned server certificate mismatch: the server's certificate has SHA-256 {}, the pins are {}",
                    hex(&hash),
                    pins.join(", ")
                )));
            }
            let (not_before, not_after) = validity(end_entity).ok_or_else(|| {
                cert_error("pinned server certificate: cannot read its validity dates".into())
            })?;
            let now_s = now.as_secs() as i64;
            if now_s > not_after.unix || now_s < not_before.unix {
                return Err(cert_error(format!(
                    "pinned server certificate is {}: valid from {} to {}, now is {}",
                    if now_s > not_after.unix {
                        "expired"
                    } else {
                        "not yet valid"
                    },
                    not_before.text,
                    not_after.text,
                    format_unix(now_s)
                )));
            }
        } else if let Some(w) = &self.webpki {
            w.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)?;
        } else if !self.opportunistic {
            return Err(cert_error("no trust anchors to verify the server".into()));
        }
        if let Some(cb) = &self.callback {
            let ctx = TrustContext {
                chain: std::iter::once(end_entity)
                    .chain(intermediates)
                    .map(|c| c.as_ref().to_vec())
                    .collect(),
                server_name: server_name.to_str().into_owned(),
            };
            cb(&ctx).map_err(|m| cert_error(format!("trust verification callback: {m}")))?;
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

// ---------------------------------------------------------------------------
// Client session cache with maxCachedSessions and cachedSessionLifetimeSeconds.

#[derive(Default)]
struct Entry {
    kx_hint: Option<NamedGroup>,
    tls12: Option<(Tls12ClientSessionValue, Instant)>,
    tls13: VecDeque<(Tls13ClientSessionValue, Instant)>,
    used: u64,
}

/// Remembers sessions for at most `max` server names, each for at most `lifetime`.
struct SessionStore {
    max: usize,
    lifetime: Option<Duration>,
    inner: Mutex<(u64, HashMap<ServerName<'static>, Entry>)>,
}

impl std::fmt::Debug for SessionStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionStore")
            .field("max", &self.max)
            .field("lifetime", &self.lifetime)
            .finish()
    }
}

/// TLS 1.3 tickets kept per server name.
const TICKETS_PER_SERVER: usize = 8;

impl SessionStore {
    fn with<R>(
        &self,
        name: &ServerName<'_>,
        insert: bool,
        f: impl FnOnce(&mut Entry) -> R,
    ) -> Option<R> {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let (clock, map) = &mut *g;
        *clock += 1;
        let key = name.to_owned();
        if !map.contains_key(&key) {
            if !insert {
                return None;
            }
            if map.len() >= self.max {
                if let Some(oldest) = map
                    .iter()
                    .min_by_key(|(_, e)| e.used)
                    .map(|(k, _)| k.clone())
                {
                    map.remove(&oldest);
                }
            }
            map.insert(key.clone(), Entry::default());
        }
        let e = map.get_mut(&key)?;
        e.used = *clock;
        Some(f(e))
    }

    fn fresh(&self, at: Instant) -> bool {
        match self.lifetime {
            Some(l) => at.elapsed() <= l,
            None => true,
        }
    }
}

impl ClientSessionStore for SessionStore {
    fn set_kx_hint(&self, server_name: ServerName<'static>, group: NamedGroup) {
        self.with(&server_name, true, |e| e.kx_hint = Some(group));
    }

    fn kx_hint(&self, server_name: &ServerName<'_>) -> Option<NamedGroup> {
        self.with(server_name, false, |e| e.kx_hint).flatten()
    }

    fn set_tls12_session(&self, server_name: ServerName<'static>, value: Tls12ClientSessionValue) {
        self.with(&server_name, true, |e| {
            e.tls12 = Some((value, Instant::now()))
        });
    }

    fn tls12_session(&self, server_name: &ServerName<'_>) -> Option<Tls12ClientSessionValue> {
        self.with(server_name, false, |e| match &e.tls12 {
            Some((v, at)) if self.fresh(*at) => Some(v.clone()),
            _ => {
                e.tls12 = None;
                None
            }
        })
        .flatten()
    }

    fn remove_tls12_session(&self, server_name: &ServerName<'static>) {
        self.with(server_name, false, |e| e.tls12 = None);
    }

    fn insert_tls13_ticket(
        &self,
        server_name: ServerName<'static>,
        value: Tls13ClientSessionValue,
    ) {
        self.with(&server_name, true, |e| {
            if e.tls13.len() >= TICKETS_PER_SERVER {
                e.tls13.pop_front();
            }
            e.tls13.push_back((value, Instant::now()));
        });
    }

    fn take_tls13_ticket(
        &self,
        server_name: &ServerName<'static>,
    ) -> Option<Tls13ClientSessionValue> {
        self.with(server_name, false, |e| {
            while let Some((v, at)) = e.tls13.pop_back() {
                if self.fresh(at) {
                    return Some(v);
                }
            }
            None
        })
        .flatten()
    }
}

/// Ticket keys whose advertised lifetime is cachedSessionLifetimeSeconds.
struct Lifetime {
    inner: Arc<dyn rustls::server::ProducesTickets>,
    seconds: u32,
}

impl std::fmt::Debug for Lifetime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Lifetime({})", self.seconds)
    }
}

impl rustls::server::ProducesTickets for Lifetime {
    fn enabled(&self) -> bool {
        self.inner.enabled()
    }
    fn lifetime(&self) -> u32 {
        self.seconds
    }
    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        self.inner.encrypt(plain)
    }
    fn decrypt(&self, cipher: &[u8]) -> Option<Vec<u8>> {
        self.inner.decrypt(cipher)
    }
}

// ---------------------------------------------------------------------------
// The configs.

fn cached<T>(
    cache: &'static OnceLock<Mutex<HashMap<String, Arc<T>>>>,
    key: String,
    make: impl FnOnce() -> Result<Arc<T>, Error>,
) -> Result<Arc<T>, Error> {
    let cache = cache.get_or_init(Default::default);
    if let Some(c) = cache.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
        return Ok(c.clone());
    }
    let c = make()?;
    let mut g = cache.lock().unwrap_or_else(|e| e.into_inner());
    if g.len() >= MAX_CACHED_CONFIGS {
        g.clear();
    }
    g.insert(key, c.clone());
    Ok(c)
}

/// The rustls client configuration for `sec`: TLS versions from
/// allowedSecurityProtocols, ALPN (`sec.alpn`, else `default_alpn`), server
/// verification (pins, else webpki roots + `trusted_ca` with a name check;
/// none for opportunistic security; then the trust verification callback),
/// the client identity, and a session cache. Cached per distinct parameters.
///
#[allow(dead_code)] // the QUIC stack uses it
pub(crate) fn client_config(
    sec: &SecurityParameters,
    default_alpn: &[&str],
    scope: SessionScope,
) -> Result<Arc<rustls::ClientConfig>, Error> {
    Ok(client_config_parts(sec, default_alpn, scope)?.0.clone())
}

/// A client config and the client identity resolver installed in it.
type ClientParts = (Arc<rustls::ClientConfig>, Arc<ClientIdentity>);

/// [`client_config`] and its [`ClientIdentity`], for callers that install a
/// fresh identity resolver per connection.
/// The session cache (in the config) is per `scope`: one per
/// TransportContext, none when isolated.
pub(crate) fn client_config_parts(
    sec: &SecurityParameters,
    default_alpn: &[&str],
    scope: SessionScope,
) -> Result<Arc<ClientParts>, Error> {
    static CACHE: OnceLock<Mutex<HashMap<String, Arc<ClientParts>>>> = OnceLock::new();
    let key = format!("{}|{default_alpn:?}|{scope:?}", sec.cache_key());
    cached(&CACHE, key, || {
        let provider = provider();
        let opportunistic = sec.mode() == SecurityMode::Opportunistic;
        let webpki = if sec.pinned_server_certificate.is_empty() && !opportunistic {
            let roots = trusted_roots(sec, sec.use_system_roots)?;
            if roots.is_empty() {
                return Err(Error::invalid_configuration(
                    "no trusted roots: use_system_roots is false and trusted_ca is empty (add a CA or a pinned_server_certificate)",
                ));
            }
            Some(
                rustls::client::WebPkiServerVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider.clone(),
                )
                .build()
                .map_err(|e| config_error("server certificate verifier", e))?,
            )
        } else {
            None
        };
        let verifier = Verifier {
            opportunistic,
            pins: sec.pinned_server_certificate.clone(),
            webpki,
            callback: sec.trust_verification_callback().cloned(),
            provider: provider.clone(),
        };
        let key = match sec.client_certificate.first() {
            Some(id) => Some(certified_key(
                id,
                sec.identity_challenge_callback(),
                "client_certificate",
            )?),
            None => None,
        };
        let identity = Arc::new(ClientIdentity { key });
        let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&versions(sec)?)
            .map_err(|e| config_error("TLS versions", e))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_client_cert_resolver(identity.clone());
        cfg.alpn_protocols = alpn(sec, default_alpn);
        // 0-RTT needs it on; data goes early only when InitiateWithSend asks
        // with a safelyReplayable Message (QUIC 0-RTT).
        cfg.enable_early_data = true;
        cfg.resumption = match sec.max_cached_sessions {
            _ if scope == SessionScope::Isolated => rustls::client::Resumption::disabled(),
            Some(0) => rustls::client::Resumption::disabled(),
            n => rustls::client::Resumption::store(Arc::new(SessionStore {
                max: n.unwrap_or(DEFAULT_CACHED_SESSIONS),
                lifetime: sec.cached_session_lifetime_seconds.map(Duration::from_secs),
                inner: Mutex::default(),
            })),
        };
        Ok(Arc::new((Arc::new(cfg), identity)))
    })
}

/// The rustls server configuration for `sec`: the first `server_certificate`
/// (required), TLS versions, ALPN (a client offering none of a non-empty
/// list is refused), client certificates when `require_client_certificate`
/// (verified against `trusted_ca`), session cache and tickets. Cached per
/// distinct parameters.
/// The server configuration with 0-RTT / TLS 1.3 early data on: rustls
/// accepts early data only with stateful, single-use resumption (RFC 8446
/// §8.1), so tickets become session IDs in the server's cache. Not when
/// client certificates are required (early data would precede them).
pub(crate) fn with_early_data(
    config: &Arc<rustls::ServerConfig>,
    sec: &SecurityParameters,
    max_early_data: u32,
) -> Arc<rustls::ServerConfig> {
    if sec.require_client_certificate {
        return config.clone();
    }
    let mut c = (**config).clone();
    c.max_early_data_size = max_early_data;
    c.ticketer = Arc::new(StatefulTickets);
    Arc::new(c)
}

pub(crate) fn server_config(
    sec: &SecurityParameters,
    default_alpn: &[&str],
) -> Result<Arc<rustls::ServerConfig>, Error> {
    static CACHE: OnceLock<Mutex<HashMap<String, Arc<rustls::ServerConfig>>>> = OnceLock::new();
    let key = format!("{}|{default_alpn:?}", sec.cache_key());
    cached(&CACHE, key, || {
        let provider = provider();
        let id = sec.server_certificate.first().ok_or_else(|| {
            Error::invalid_configuration(
                "a TLS Listener needs SecurityParameters::server_certificate (an Identity with the certificate chain and private key)",
            )
        })?;
        let ck = certified_key(id, sec.identity_challenge_callback(), "server_certificate")?;
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&versions(sec)?)
            .map_err(|e| config_error("TLS versions", e))?;
        let builder = if sec.require_client_certificate {
            if sec.trusted_ca.is_empty() {
                return Err(Error::invalid_configuration(
                    "require_client_certificate needs trusted_ca: the CAs that issue client certificates",
                ));
            }
            let roots = trusted_roots(sec, false)?;
            builder.with_client_cert_verifier(
                rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider.clone(),
                )
                .build()
                .map_err(|e| config_error("client certificate verifier", e))?,
            )
        } else {
            builder.with_no_client_auth()
        };
        let mut cfg = builder.with_cert_resolver(Arc::new(SingleIdentity(ck)));
        cfg.alpn_protocols = alpn(sec, default_alpn);
        match sec.max_cached_sessions {
            Some(0) => {
                cfg.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
                cfg.send_tls13_tickets = 0;
            }
            _ if sec.cached_session_lifetime_seconds == Some(0) => {
                // No session lives on: none is kept, no ticket is sent.
                cfg.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
                cfg.send_tls13_tickets = 0;
            }
            n => {
                let memory = rustls::server::ServerSessionMemoryCache::new(
                    n.unwrap_or(DEFAULT_CACHED_SESSIONS),
                );
                // Sessions kept here (the stateful tickets of 0-RTT, see
                // `with_early_data`) age as the tickets below do.
                cfg.session_storage = match sec.cached_session_lifetime_seconds {
                    Some(s) => Arc::new(AgedSessions {
                        inner: memory,
                        lifetime: Duration::from_secs(s),
                    }),
                    None => memory,
                };
                let ticketer = rustls::crypto::ring::Ticketer::new()
                    .map_err(|e| config_error("session tickets", e))?;
                cfg.ticketer = match sec.cached_session_lifetime_seconds {
                    Some(s) => Arc::new(Lifetime {
                        inner: ticketer,
                        seconds: s.min(u64::from(u32::MAX)) as u32,
                    }),
                    None => ticketer,
                };
            }
        }
        Ok(Arc::new(cfg))
    })
}

/// A server's session cache whose sessions expire `lifetime` after they
/// were stored (cachedSessionLifetimeSeconds): rustls's memory cache keeps
/// them until it evicts them, and its stateful tickets say 24 h whatever
/// the application set. Each value is stored behind the time it was put.
#[derive(Debug)]
struct AgedSessions {
    inner: Arc<dyn rustls::server::StoresServerSessions>,
    lifetime: Duration,
}

impl AgedSessions {
    /// Milliseconds on a monotonic clock of the process's own.
    fn now_ms() -> u64 {
        static START: OnceLock<std::time::Instant> = OnceLock::new();
        let start = *START.get_or_init(std::time::Instant::now);
        u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// The session in `stored`, if it is still within its lifetime.
    fn fresh(&self, stored: Vec<u8>) -> Option<Vec<u8>> {
        let (at, value) = stored.split_first_chunk::<8>()?;
        let age = Self::now_ms().saturating_sub(u64::from_be_bytes(*at));
        (u128::from(age) < self.lifetime.as_millis()).then(|| value.to_vec())
    }
}

impl rustls::server::StoresServerSessions for AgedSessions {
    fn put(&self, key: Vec<u8>, value: Vec<u8>) -> bool {
        let mut stored = Vec::with_capacity(8 + value.len());
        stored.extend_from_slice(&Self::now_ms().to_be_bytes());
        stored.extend_from_slice(&value);
        self.inner.put(key, stored)
    }
    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.fresh(self.inner.get(key)?)
    }
    fn take(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.fresh(self.inner.take(key)?)
    }
    fn can_cache(&self) -> bool {
        self.inner.can_cache()
    }
}

/// Presents one identity to every client.
#[derive(Debug)]
struct SingleIdentity(Arc<CertifiedKey>);

impl rustls::server::ResolvesServerCert for SingleIdentity {
    fn resolve(&self, _hello: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::{ClientConnection, HandshakeKind, ServerConnection};

    fn pump(c: &mut ClientConnection, s: &mut ServerConnection) {
        for _ in 0..10 {
            let mut buf = Vec::new();
            while c.wants_write() {
                c.write_tls(&mut buf).unwrap();
            }
            let mut rd = &buf[..];
            while !rd.is_empty() {
                s.read_tls(&mut rd).unwrap();
                s.process_new_packets().unwrap();
            }
            let mut buf = Vec::new();
            while s.wants_write() {
                s.write_tls(&mut buf).unwrap();
            }
            let mut rd = &buf[..];
            while !rd.is_empty() {
                c.read_tls(&mut rd).unwrap();
                c.process_new_packets().unwrap();
            }
        }
    }

    /// A server with a new certificate for `localhost`, and a client that
    /// pins it.
    fn parties() -> (SecurityParameters, SecurityParameters) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let mut server = SecurityParameters::new();
        server.server_certificate =
            vec![Identity::from_pem(&cert.pem(), &key.serialize_pem()).unwrap()];
        let mut client = SecurityParameters::new();
        client.pinned_server_certificate =
            vec![crate::security::certificate_sha256(&cert.pem()).unwrap()];
        (server, client)
    }

    /// Two handshakes in memory, `wait` apart; the kind of the second.
    fn two_handshakes(
        cc: Arc<rustls::ClientConfig>,
        sc: Arc<rustls::ServerConfig>,
        wait: Duration,
    ) -> HandshakeKind {
        let mut kind = None;
        for round in 0..2 {
            if round == 1 {
                std::thread::sleep(wait);
            }
            let mut c = ClientConnection::new(cc.clone(), "localhost".try_into().unwrap()).unwrap();
            let mut s = ServerConnection::new(sc.clone()).unwrap();
            pump(&mut c, &mut s);
            assert!(!c.is_handshaking() && !s.is_handshaking());
            kind = c.handshake_kind();
        }
        kind.unwrap()
    }

    /// Two handshakes in memory; the kind of the second.
    fn second_handshake(tune: impl Fn(&mut SecurityParameters)) -> HandshakeKind {
        let (mut server, mut client) = parties();
        tune(&mut server);
        tune(&mut client);
        let sc = server_config(&server, &[]).unwrap();
        let cc = client_config(&client, &[], SessionScope::Process).unwrap();
        two_handshakes(cc, sc, Duration::ZERO)
    }

    /// As [`second_handshake`], against the server configuration a
    /// Listener uses (`with_early_data`: stateful, single-use sessions),
    /// tuned on the server alone, with `wait` between the handshakes.
    fn second_handshake_with_a_listener(
        tune: impl Fn(&mut SecurityParameters),
        wait: Duration,
    ) -> HandshakeKind {
        let (mut server, client) = parties();
        tune(&mut server);
        let sc = with_early_data(&server_config(&server, &[]).unwrap(), &server, 16384);
        // Isolated: the client keeps no sessions of its own; a store of
        // this test's keeps the ticket.
        let mut cc = (*client_config(&client, &[], SessionScope::Isolated).unwrap()).clone();
        cc.resumption = rustls::client::Resumption::in_memory_sessions(4);
        two_handshakes(Arc::new(cc), sc, wait)
    }

    /// A Listener's server (stateful tickets for 0-RTT) holds
    /// cachedSessionLifetimeSeconds too: 0 resumes nothing, and a session
    /// older than the lifetime is not resumed (rustls's stateful tickets
    /// lived until evicted, whatever the application set).
    #[test]
    fn a_listener_s_sessions_live_their_lifetime() {
        let none = Duration::ZERO;
        assert_eq!(
            second_handshake_with_a_listener(|_| {}, none),
            HandshakeKind::Resumed
        );
        assert_eq!(
            second_handshake_with_a_listener(|s| s.cached_session_lifetime_seconds = Some(0), none),
            HandshakeKind::Full
        );
        let one = |s: &mut SecurityParameters| s.cached_session_lifetime_seconds = Some(1);
        assert_eq!(
            second_handshake_with_a_listener(one, none),
            HandshakeKind::Resumed
        );
        assert_eq!(
            second_handshake_with_a_listener(one, Duration::from_millis(1100)),
            HandshakeKind::Full
        );
    }

    #[test]
    fn sessions_resume_within_limits() {
        assert_eq!(second_handshake(|_| {}), HandshakeKind::Resumed);
        assert_eq!(
            second_handshake(|s| s.max_cached_sessions = Some(0)),
            HandshakeKind::Full
        );
        assert_eq!(
            second_handshake(|s| s.cached_session_lifetime_seconds = Some(0)),
            HandshakeKind::Full
        );
        assert_eq!(
            second_handshake(|s| s.cached_session_lifetime_seconds = Some(3600)),
            HandshakeKind::Resumed
        );
    }

    #[test]
    fn key_kinds_and_validity() {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["x.example".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        assert_eq!(key_kind(cert.der()), Some(KeyKind::EcdsaP256));
        let (nb, na) = validity(cert.der()).unwrap();
        assert!(nb.unix < na.unix);
    }

    #[test]
    fn times_format_as_utc() {
        assert_eq!(format_unix(1_577_836_800), "2020-01-01 00:00:00 UTC");
        assert_eq!(format_unix(2_524_607_999), "2049-12-31 23:59:59 UTC");
        assert_eq!(format_unix(-1), "1969-12-31 23:59:59 UTC");
    }

    #[test]
    fn not_a_certificate_has_no_dates_or_key_type() {
        assert!(validity(b"not DER").is_none());
        assert!(key_kind(&[0x30, 0x03, 0x02, 0x01, 0x00]).is_none());
    }
}

/// Issues no self-contained (stateless) tickets, so rustls falls back to
/// stateful, single-use session IDs, which 0-RTT requires.
#[derive(Debug)]
pub(crate) struct StatefulTickets;

impl rustls::server::ProducesTickets for StatefulTickets {
    fn enabled(&self) -> bool {
        false
    }
    fn lifetime(&self) -> u32 {
        0
    }
    fn encrypt(&self, _plain: &[u8]) -> Option<Vec<u8>> {
        None
    }
    fn decrypt(&self, _cipher: &[u8]) -> Option<Vec<u8>> {
        None
    }
}
