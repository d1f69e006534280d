#!/usr/bin/env bash
# The postsocket racing demo: builds and runs `racing-demo`, which races IPv6
# against IPv4 on loopback (a blackholed [::1] port, then a refused one), then
# QUIC (blackholed) against TLS over TCP, and prints each race's timeline.
# Needs: rustup + cargo (stable). Installs nothing.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
echo "==> building racing-demo"
cargo build --release -p postsocket-examples --bin racing-demo
echo "==> running racing-demo"
exec "${CARGO_TARGET_DIR:-target}/release/racing-demo" "$@"
