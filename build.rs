//! Defines the target predicates once. `web` is the browser (wasm32 with no OS);
//! `native` is everything else. Cargo.toml repeats the same literals in its target tables.
//! The rest say which platforms have a socket option that only some do
//! (`src/backend/native/sockopt.rs`; the lists follow socket2's own).
fn main() {
    cfg_aliases::cfg_aliases! {
        web: { all(target_arch = "wasm32", target_os = "unknown") },
        native: { not(all(target_arch = "wasm32", target_os = "unknown")) },
        // SOCK_NONBLOCK at socket creation.
        sock_nonblock: { any(
            target_os = "android", target_os = "dragonfly", target_os = "freebsd",
            target_os = "fuchsia", target_os = "illumos", target_os = "linux",
            target_os = "netbsd", target_os = "openbsd"
        ) },
        // SO_BINDTODEVICE and TCP_USER_TIMEOUT.
        linux_like: { any(target_os = "android", target_os = "fuchsia", target_os = "linux") },
        // IPV6_TCLASS.
        ipv6_tclass: { any(
            target_os = "android", target_os = "dragonfly", target_os = "freebsd",
            target_os = "fuchsia", target_os = "illumos", target_os = "linux",
            target_os = "macos", target_os = "netbsd", target_os = "openbsd"
        ) },
    }
}
