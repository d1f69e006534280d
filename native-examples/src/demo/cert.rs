//! The short-lived certificate the browser's WebTransport accepts by hash
//! (`serverCertificateHashes`): ECDSA P-256, self-signed, valid at most 14
//! days (W3C WebTransport §4.4), with the loopback names as SANs.

use postsocket::security::Identity;
use std::time::Duration;

/// How long a certificate is valid: under the browser's 14-day limit.
pub const VALIDITY: Duration = Duration::from_secs(10 * 24 * 3600);
/// Rotate this long before expiry, so a page never gets an expired hash.
pub const ROTATE_AFTER: Duration = Duration::from_secs(7 * 24 * 3600);

/// A fresh certificate and what the page needs of it.
pub struct ShortLivedCert {
    /// The server identity for a Listener's SecurityParameters.
    pub identity: Identity,
    /// The certificate in PEM.
    pub cert_pem: String,
    /// SHA-256 of the DER certificate, lowercase hex: the page's
    /// `serverCertificateHashes` value (postsocket's pinnedServerCertificate).
    pub sha256_hex: String,
    /// Expiry, seconds since the Unix epoch.
    pub not_after_unix: i64,
}

/// Make an ECDSA P-256 certificate for localhost, 127.0.0.1 and ::1, valid
/// from one hour ago for [`VALIDITY`].
pub fn short_lived() -> Result<ShortLivedCert, String> {
    let names = vec!["localhost".to_string(), "127.0.0.1".into(), "::1".into()];
    let mut params =
        rcgen::CertificateParams::new(names).map_err(|e| format!("certificate names: {e}"))?;
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    let not_after = now + time::Duration::seconds(VALIDITY.as_secs() as i64);
    params.not_after = not_after;
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map_err(|e| format!("ECDSA P-256 key: {e}"))?;
    let cert = params
        .self_signed(&key)
        .map_err(|e| format!("self-signing: {e}"))?;
    let cert_pem = cert.pem();
    let identity =
        Identity::from_pem(&cert_pem, &key.serialize_pem()).map_err(|e| e.to_string())?;
    let sha256_hex = postsocket::security::certificate_sha256(&cert_pem)
        .map_err(|e| e.to_string())?
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok(ShortLivedCert {
        identity,
        cert_pem,
        sha256_hex,
        not_after_unix: not_after.unix_timestamp(),
    })
}
