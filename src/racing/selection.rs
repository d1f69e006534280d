//! Selection: filter and rank protocol stacks by the transport properties
//! (RFC 9623 §4.1.3). Prohibit and Require filter; Prefer and Avoid rank,
//! explicitly set properties weighing more than defaults. Pure: no I/O.

use crate::capability::{Capabilities, DataUnit, SecurityProtocol, StackId, Support};
use crate::error::{CandidateFailure, Error, ErrorReason};
use crate::properties::{Direction, Preference, SelectionProperty, TransportProperties};
use crate::security::{SecurityMode, SecurityParameters};

/// The capability row a stack offers once the Preconnection's framers are
/// on it: a framer gives a byte stream message boundaries.
pub fn effective(caps: &Capabilities, has_framer: bool) -> Capabilities {
    let mut c = *caps;
    if has_framer && c.data_unit == DataUnit::ByteStream {
        c.preserve_msg_boundaries = Support::Always;
    }
    c
}

/// Why a stack cannot satisfy the properties, or `None` if it can.
pub fn rejection(
    caps: &Capabilities,
    props: &TransportProperties,
    security: &SecurityParameters,
) -> Option<String> {
    rejected(caps, props, security).map(|r| r.message(caps, props, security))
}

/// Why a stack is rejected, kept as data: [`select`] words it only when the
/// error that lists it is returned (a race that goes ahead never shows it).
#[derive(Clone, Copy)]
enum Rejected {
    /// A required property the stack cannot provide.
    Require(SelectionProperty),
    /// A prohibited property the stack always provides.
    Prohibit(SelectionProperty),
    /// A unidirectional Connection on a bidirectional-only stack.
    Direction,
    /// The SecurityParameters do not admit its security protocol.
    Security,
    /// QUIC or WebTransport while allowedSecurityProtocols leaves out TLS 1.3.
    Tls13,
}

impl Rejected {
    /// The words of [`rejection`].
    fn message(
        self,
        caps: &Capabilities,
        props: &TransportProperties,
        security: &SecurityParameters,
    ) -> String {
        match self {
            Rejected::Require(p) => {
                let hint = if p == SelectionProperty::PreserveMsgBoundaries
                    && caps.data_unit == DataUnit::ByteStream
                {
                    " (it is a byte stream: add a framer)"
                } else {
                    ""
                };
                format!(
                    "Require {}: {} does not provide it{hint}",
                    p.name(),
                    caps.stack
                )
            }
            Rejected::Prohibit(p) => {
                format!("Prohibit {}: {} always provides it", p.name(), caps.stack)
            }
            Rejected::Direction => format!(
                "{:?}: {} is bidirectional only",
                props.direction, caps.stack
            ),
            // Worded from the same parameters it was rejected with; the
            // fallback only keeps this free of a panic path.
            Rejected::Security => match security.admits(caps.security) {
                Err(why) => format!("{} {why}", caps.stack),
                Ok(()) => format!(
                    "{}: its security does not fit the SecurityParameters",
                    caps.stack
                ),
            },
            Rejected::Tls13 => format!(
                "{} needs TLS 1.3, which allowedSecurityProtocols {:?} leaves out",
                caps.stack, security.allowed_security_protocols
            ),
        }
    }
}

/// The first reason (in [`rejection`]'s order) a stack cannot satisfy the properties.
fn rejected(
    caps: &Capabilities,
    props: &TransportProperties,
    security: &SecurityParameters,
) -> Option<Rejected> {
    for p in SelectionProperty::ALL {
        let Some(support) = p.support(caps) else {
            continue;
        };
        match props.get(p) {
            Preference::Require if !support.can_provide() => return Some(Rejected::Require(p)),
            Preference::Prohibit if !support.can_avoid() => return Some(Rejected::Prohibit(p)),
            _ => {}
        }
    }
    if props.direction != Direction::Bidirectional && !caps.unidirectional.can_provide() {
        return Some(Rejected::Direction);
    }
    if security.admits(caps.security).is_err() {
        return Some(Rejected::Security);
    }
    // QUIC, and WebTransport over it, run TLS 1.3 only (RFC 9001 §4.2).
    let allowed = &security.allowed_security_protocols;
    if caps.tls13_only
        && !allowed.is_empty()
        && !allowed.contains(&crate::security::SecurityProtocolVersion::Tls13)
    {
        return Some(Rejected::Tls13);
    }
    None
}

fn score(
    caps: &Capabilities,
    props: &TransportProperties,
    security: &SecurityParameters,
) -> [i32; 5] {
    let mut s = [0i32; 5];
    // Opportunistic security: secure stacks first.
    if security.mode() == SecurityMode::Opportunistic && caps.security != SecurityProtocol::None {
        s[0] = 1;
    }
    for p in SelectionProperty::ALL {
        let Some(support) = p.support(caps) else {
            continue;
        };
        let slot = if props.is_explicit(p) { 1 } else { 3 };
        match props.get(p) {
            Preference::Prefer if support.can_provide() => s[slot] += 1,
            Preference::Avoid if support.can_avoid() => s[slot + 1] += 1,
            _ => {}
        }
    }
    s
}

/// Select and rank the stacks of `registry` (in default order) for `props`.
///
/// Contradictory properties fail with InvalidConfiguration and unsatisfiable
/// ones with NoCandidates, listing why each stack was excluded — all before
/// any network activity.
///
/// Opt-in stacks (natively: ws and wss, whose attempt sends an HTTP request
/// to whatever listens on the port, and which would otherwise race a second
/// TCP connection against every plaintext or TLS candidate) are candidates
/// only when `allowed` (`Preconnection::set_protocols`) names them.
pub fn select(
    registry: &[Capabilities],
    props: &TransportProperties,
    security: &SecurityParameters,
    has_framer: bool,
    allowed: Option<&[StackId]>,
) -> Result<Vec<Capabilities>, Error> {
    props.check_consistency()?;
    let mut ok: Vec<(usize, Capabilities)> = Vec::new();
    let mut excluded: Vec<(Capabilities, Rejected)> = Vec::new();
    for (i, caps) in registry.iter().enumerate() {
        if let Some(allowed) = allowed {
            if !allowed.contains(&caps.stack) {
                continue;
            }
        } else if caps.opt_in {
            continue;
        }
        let c = effective(caps, has_framer);
        match rejected(&c, props, security) {
            None => ok.push((i, c)),
            Some(why) => excluded.push((c, why)),
        }
    }
    if !ok.is_empty() {
        // Stable sort: ties keep the registry's default order.
        ok.sort_by(|(ia, a), (ib, b)| {
            score(b, props, security)
                .cmp(&score(a, props, security))
                .then(ia.cmp(ib))
        });
        return Ok(ok.into_iter().map(|(_, c)| c).collect());
    }
    let mut rejected: Vec<CandidateFailure> = excluded
        .into_iter()
        .map(|(c, why)| {
            CandidateFailure::new(
                "-".into(),
                Some(c.stack.to_string()),
                None,
                ErrorReason::NoCandidates,
                why.message(&c, props, security),
            )
        })
        .collect();
    if let Some(allowed) = allowed {
        for s in allowed {
            if !registry.iter().any(|c| c.stack == *s) {
                rejected.push(CandidateFailure::new(
                    "-".into(),
                    Some(s.to_string()),
                    None,
                    ErrorReason::NoCandidates,
                    format!("the {s} stack is not in this build (natively each stack but tcp and udp is a cargo feature of postsocket: tls, quic, ws, wt, webrtc; the browser has ws, wss, wt and webrtc)"),
                ));
            }
        }
    }
    let msg = if registry.is_empty() {
        "this target has no protocol stacks yet".to_string()
    } else if security.mode() == SecurityMode::Required
        && registry
            .iter()
            .all(|c| c.security == SecurityProtocol::None)
    {
        format!(
            "no protocol stack satisfies the properties ({} excluded); security is required and no secure stack is in this build (natively TLS and QUIC are postsocket's cargo features `tls` and `quic`)",
            rejected.len()
        )
    } else {
        format!(
            "no protocol stack satisfies the properties ({} excluded)",
            rejected.len()
        )
    };
    Err(Error::new(ErrorReason::NoCandidates, msg).with_candidates(rejected))
}
