#!/usr/bin/env bash
# Benchmark of the npm package (not a test): the .wasm size after gzip (goal <= 200 KB)
# and WebSocket message throughput through postsocket vs the browser's raw WebSocket,
# in the same page of headless Chromium, against the same native echo server (ws-echo,
# release build). Prints both figures and their ratio (goal >= 0.9x), the median of RUNS
# paired runs (default 21) with a 90% confidence interval of that median. Needs what scripts/test.sh needs (Chromium, Node >= 20, wasm-bindgen-cli).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
TMP="$(mktemp -d)"
ECHO_PID=""
cleanup() {
    [ -n "$ECHO_PID" ] && kill "$ECHO_PID" 2>/dev/null || true
    rm -rf "$TMP"
}
trap cleanup EXIT

scripts/build-npm.sh "$ROOT/web/pkg"
WASM="$ROOT/web/pkg/postsocket_web_bg.wasm"
RAW_BYTES="$(wc -c <"$WASM")"
GZ_BYTES="$(gzip -9c "$WASM" | wc -c)"

cargo build --release -p postsocket-examples --bin ws-echo
[ -d web/test/node_modules/playwright-core ] || (cd web/test && npm ci --no-audit --no-fund --silent)
timeout 900 "$TARGET_DIR/release/ws-echo" 0 >"$TMP/ws-echo.out" 2>"$TMP/ws-echo.err" &
ECHO_PID=$!
for _ in $(seq 1 100); do
    [ "$(grep -c '^POSTSOCKET_WS_' "$TMP/ws-echo.out")" -ge 3 ] && break
    sleep 0.1
done
grep -q '^POSTSOCKET_WS_ECHO_PORT=' "$TMP/ws-echo.out" || { cat "$TMP/ws-echo.err" >&2; exit 1; }

echo
printf 'wasm size: %d bytes, %d bytes gzipped (%.1f KB; goal <= 200 KB: %s)\n' "$RAW_BYTES" "$GZ_BYTES" \
    "$(awk "BEGIN {print $GZ_BYTES / 1024}")" "$([ "$GZ_BYTES" -le 204800 ] && echo met || echo NOT met)"
env $(cat "$TMP/ws-echo.out") RUNS="${RUNS:-21}" timeout 600 node web/test/bench.mjs
