//! The socket options that only some platforms have, in one place. Each
//! function sets its option where the platform has it; elsewhere it needs
//! nothing (non-blocking sockets), or fails with `Unsupported` naming the
//! option and the property that asked for it, and only when one did.

use socket2::{Domain, Protocol, SockRef, Socket, Type};
use std::io;
use std::time::Duration;

#[cfg_attr(all(sock_nonblock, linux_like, ipv6_tclass), allow(dead_code))]
fn unsupported(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::Unsupported, what)
}

/// A new non-blocking socket (in one syscall where the platform can).
pub(crate) fn new_socket(domain: Domain, ty: Type, proto: Protocol) -> io::Result<Socket> {
    #[cfg(sock_nonblock)]
    {
        Socket::new(domain, ty.nonblocking(), Some(proto))
    }
    #[cfg(not(sock_nonblock))]
    {
        let sock = Socket::new(domain, ty, Some(proto))?;
        sock.set_nonblocking(true)?;
        Ok(sock)
    }
}

/// Bind `sock` to the interface named `ifname` (a LocalEndpoint's
/// interface): Linux, Android and Fuchsia only.
pub(crate) fn bind_device(sock: &Socket, ifname: &str) -> io::Result<()> {
    #[cfg(linux_like)]
    {
        sock.bind_device(Some(ifname.as_bytes())).map_err(|e| {
            io::Error::new(e.kind(), format!("cannot bind to interface {ifname}: {e}"))
        })
    }
    #[cfg(not(linux_like))]
    {
        let _ = sock;
        Err(unsupported(format!(
            "binding to the interface {ifname} (a LocalEndpoint's interface) needs Linux, Android or Fuchsia; give the interface's IP address instead"
        )))
    }
}

/// TCP_USER_TIMEOUT (connTimeout, tcp.userTimeoutValue): Linux, Android and
/// Fuchsia only; `None` (the default) needs nothing anywhere.
pub(crate) fn set_tcp_user_timeout(sock: &SockRef<'_>, t: Option<Duration>) -> io::Result<()> {
    #[cfg(linux_like)]
    {
        sock.set_tcp_user_timeout(t)
    }
    #[cfg(not(linux_like))]
    {
        let _ = sock;
        match t {
            None => Ok(()),
            Some(_) => Err(unsupported(
                "connTimeout (or tcp.userTimeoutValue) sets TCP_USER_TIMEOUT, which this platform does not have".into(),
            )),
        }
    }
}

/// The DSCP of every packet (connCapacityProfile): the IPv4 TOS or the IPv6
/// traffic class. The latter is not settable on every platform (Windows).
pub(crate) fn set_dscp(sock: &SockRef<'_>, ipv6: bool, dscp: u8) -> io::Result<()> {
    let tos = u32::from(dscp) << 2;
    if !ipv6 {
        return sock.set_tos_v4(tos);
    }
    #[cfg(ipv6_tclass)]
    {
        sock.set_tclass_v6(tos)
    }
    #[cfg(not(ipv6_tclass))]
    {
        Err(unsupported(format!(
            "connCapacityProfile sets the IPv6 traffic class (DSCP {dscp}), which this platform cannot set"
        )))
    }
}

/// How long the peer of a TCP connection has sent nothing, by the kernel's
/// clock: since its last data, or since the connection was established
/// (TCP_INFO `tcpi_last_data_recv`), so it counts the time the connection
/// waited in the listen backlog too. Linux only; `None` elsewhere. (Used
/// by the TLS and WebSocket port only.)
#[cfg_attr(not(any(feature = "tls", feature = "ws")), allow(dead_code))]
pub(crate) fn tcp_quiet_for(sock: &SockRef<'_>) -> Option<Duration> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: TCP_INFO fills at most `len` bytes of a zeroed tcp_info
        // (a plain C struct); the descriptor is open (borrowed by `sock`).
        let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
        let r = unsafe {
            libc::getsockopt(
                sock.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_INFO,
                (&mut info as *mut libc::tcp_info).cast(),
                &mut len,
            )
        };
        (r == 0).then(|| Duration::from_millis(u64::from(info.tcpi_last_data_recv)))
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = sock;
        None
    }
}

/// The default of `ListenerLimits::with_waiting_peers` for a port with
/// `places` pending places: on Linux, a quarter of what the process's
/// open-file limit (its soft RLIMIT_NOFILE) leaves once the places hold
/// their most (three descriptors each: the socket, the duplicate that
/// tells whether its bytes wait unread, and the sniff's), at most 4,096;
/// 0 elsewhere (no peer waits outside the places unless the application
/// sets a bound).
#[cfg_attr(not(any(feature = "tls", feature = "ws")), allow(dead_code))]
pub(crate) fn default_waiting_peers(places: usize) -> usize {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: getrlimit fills a plain C struct.
        let mut lim: libc::rlimit = unsafe { std::mem::zeroed() };
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
            return 0;
        }
        let files = usize::try_from(lim.rlim_cur).unwrap_or(usize::MAX);
        (files.saturating_sub(places.saturating_mul(3)) / 4).min(4096)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = places;
        0
    }
}

/// True when a non-blocking `connect` failed only because the handshake is
/// still under way (`EINPROGRESS` on Unix, `WSAEWOULDBLOCK` on Windows),
/// as mio decides it.
pub(crate) fn connect_in_progress(e: &io::Error) -> bool {
    #[cfg(unix)]
    {
        e.raw_os_error() == Some(libc::EINPROGRESS)
    }
    #[cfg(not(unix))]
    {
        e.kind() == io::ErrorKind::WouldBlock
    }
}

/// True for an error code Linux leaves on a connected UDP socket for an
/// ICMP message about an earlier datagram (`__udp4_lib_err`,
/// `__udp6_lib_err`): host or network unreachable or down, administratively
/// prohibited, protocol unreachable, a parameter problem, fragmentation
/// needed or packet too big. Elsewhere only the kinds
/// `udp::is_icmp_report` names are known.
pub(crate) fn is_icmp_errno(code: i32) -> bool {
    #[cfg(target_os = "linux")]
    {
        matches!(
            code,
            libc::EHOSTUNREACH
                | libc::ENETUNREACH
                | libc::EHOSTDOWN
                | libc::ENONET
                | libc::ENOPROTOOPT
                | libc::EPROTO
                | libc::EMSGSIZE
                | libc::EACCES
        )
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = code;
        false
    }
}
