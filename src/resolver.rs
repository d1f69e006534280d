//! Name resolution behind an interface: AAAA and A answers come back
//! separately, so the racing engine can start IPv6 attempts while A is still
//! out and apply the Resolution Delay (RFC 8305 §3). Tests replace it.

use crate::racing::Family;
use crate::runtime::BoxFuture;
use std::net::IpAddr;

/// Resolves a host name for one address family.
pub trait Resolver: Send + Sync + 'static {
    /// The addresses of `host` in `family`; an error says why there are none.
    fn resolve(
        &self,
        host: &str,
        family: Family,
    ) -> BoxFuture<'static, Result<Vec<IpAddr>, String>>;

    /// Whether host names skip this resolver and go to the protocol stacks
    /// as they are ([`crate::racing::RemoteSpec::Name`]): true only for the
    /// browser's [`SystemResolver`], since a page has no DNS API and the
    /// browser resolves the names its WebSocket and WebTransport open.
    fn passes_names_to_stacks(&self) -> bool {
        false
    }
}

/// The system resolver natively (getaddrinfo per family, /etc/hosts included).
/// In the browser there is no DNS API: host names go to the browser stacks as
/// they are, and this resolver reports that it cannot resolve.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemResolver;

impl Resolver for SystemResolver {
    fn resolve(
        &self,
        host: &str,
        family: Family,
    ) -> BoxFuture<'static, Result<Vec<IpAddr>, String>> {
        crate::backend::system_resolve(host.to_string(), family)
    }

    fn passes_names_to_stacks(&self) -> bool {
        crate::backend::STACKS_RESOLVE_NAMES
    }
}

/// A resolver with fixed answers for every name, each family after its own
/// delay: for tests, demos, and pinning names without DNS. A family with no
/// answer configured fails with a message that says so.
#[derive(Debug, Clone, Default)]
pub struct StaticResolver {
    answers: Vec<(Family, Vec<IpAddr>, std::time::Duration)>,
}

impl StaticResolver {
    /// A resolver that answers nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// Answer `family` queries with `addrs` after `delay`.
    pub fn answer(
        mut self,
        family: Family,
        addrs: Vec<IpAddr>,
        delay: std::time::Duration,
    ) -> Self {
        self.answers.push((family, addrs, delay));
        self
    }
}

impl Resolver for StaticResolver {
    fn resolve(
        &self,
        host: &str,
        family: Family,
    ) -> BoxFuture<'static, Result<Vec<IpAddr>, String>> {
        // Decided here, so that the future owns only its answer: the host
        // name is copied only into an error's text.
        let (answer, delay) = match self.answers.iter().find(|(f, ..)| *f == family) {
            Some((_, addrs, delay)) if addrs.is_empty() => {
                (Err(format!("no {family:?} address for {host}")), *delay)
            }
            Some((_, addrs, delay)) => (Ok(addrs.clone()), *delay),
            None => (
                Err(format!("no {family:?} answer configured for {host}")),
                std::time::Duration::ZERO,
            ),
        };
        // No timer for no delay (a timer rounds up to its tick).
        if delay.is_zero() {
            return Box::pin(std::future::ready(answer));
        }
        Box::pin(async move {
            crate::runtime::sleep_until(crate::runtime::now() + delay).await;
            answer
        })
    }
}
