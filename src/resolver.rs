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
}
