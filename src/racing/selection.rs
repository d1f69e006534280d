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
    for p in SelectionProperty::ALL {
        let Some(support) = p.support(caps) else {
            continue;
        };
        match props.get(p) {
            Preference::Require if !support.can_provide() => {
                let hint = if p == SelectionProperty::PreserveMsgBoundaries
                    && caps.data_unit == DataUnit::ByteStream
                {
                    " (it is a byte stream: add a framer)"
                } else {
                    ""
                };
                return Some(format!(
                    "Require {}: {} does not provide it{hint}",
                    p.name(),
                    caps.stack
                ));
            }
            Preference::Prohibit if !support.can_avoid() => {
                return Some(format!(
                    "Prohibit {}: {} always provides it",
                    p.name(),
                    caps.stack
                ));
            }
            _ => {}
        }
    }
    if props.direction != Direction::Bidirectional && !caps.unidirectional.can_provide() {
        return Some(format!(
            "{:?}: {} is bidirectional only",
            props.direction, caps.stack
        ));
    }
    if let Err(why) = security.admits(caps.security) {
        return Some(format!("{} {why}", caps.stack));
    }
    // QUIC, and WebTransport over it, run TLS 1.3 only (RFC 9001 §4.2).
    let allowed = &security.allowed_security_protocols;
    if caps.tls13_only
        && !allowed.is_empty()
        && !allowed.contains(&crate::security::SecurityProtocolVersion::Tls13)
    {
        return Some(format!(
            "{} needs TLS 1.3, which allowedSecurityProtocols {allowed:?} leaves out",
            caps.stack
        ));
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
    let mut rejected = Vec::new();
    for (i, caps) in registry.iter().enumerate() {
        if let Some(allowed) = allowed {
            if !allowed.contains(&caps.stack) {
                continue;
            }
        } else if caps.opt_in {
            continue;
        }
        let c = effective(caps, has_framer);
        match rejection(&c, props, security) {
            None => ok.push((i, c)),
            Some(why) => rejected.push(CandidateFailure::new(
                "-".into(),
                Some(caps.stack.to_string()),
                None,
                ErrorReason::NoCandidates,
                why,
            )),
        }
    }
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
    if ok.is_empty() {
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
        return Err(Error::new(ErrorReason::NoCandidates, msg).with_candidates(rejected));
    }
    // Stable sort: ties keep the registry's default order.
    ok.sort_by(|(ia, a), (ib, b)| {
        score(b, props, security)
            .cmp(&score(a, props, security))
            .then(ia.cmp(ib))
    });
    Ok(ok.into_iter().map(|(_, c)| c).collect())
}
