#!/usr/bin/env bash
# The postsocket www demo: builds the npm package (wasm32) and demo-server,
# then starts demo-server on 127.0.0.1 (it prints the URL to open). The page
# races WebTransport and WebSocket against the server's echo Listener, lets
# you break a stack on the server and watch fallback, and draws native races
# the server runs.
#
# Installs when missing: the wasm32-unknown-unknown target, wasm-bindgen-cli
# (cargo install, a few minutes), node and npm (apt-get, as root).
# Options after the command go to demo-server (e.g. --port 0 for any free port).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
fail() {
    printf '\033[31mdemo: %s\033[0m\n' "$*" >&2
    exit 1
}
# shellcheck source=scripts/toolchain.sh
. scripts/toolchain.sh

echo "==> toolchain"
ensure_wasm_target
ensure_wasm_bindgen
ensure_node
echo "==> the npm package (scripts/build-npm.sh)"
scripts/build-npm.sh "$ROOT/web/pkg"
echo "==> demo-server"
cargo build --release -p postsocket-examples --bin demo-server
echo "==> starting demo-server (Ctrl-C stops it)"
exec "${CARGO_TARGET_DIR:-$ROOT/target}/release/demo-server" --pkg "$ROOT/web/pkg" --www "$ROOT/www" "$@"
