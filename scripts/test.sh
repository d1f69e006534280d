#!/usr/bin/env bash
# Run every test of postsocket: formatting, clippy (native and wasm32), unit and
# integration tests, the racing engine's scripts and the browser stacks (WebSocket,
# WebTransport, WebRTC) in headless Chromium, the npm package (build, pack, types,
# Playwright), the www demo end to end, the README example check, and smoke tests of the
# example programs (racing-demo, tapscat).
# Needs: rustup + cargo (stable), root for the loopback-only network namespaces (unshare -n)
# of the WebRTC and demo steps. Installs when missing: the wasm32-unknown-unknown and
# x86_64-pc-windows-gnu targets (the latter for a Windows cross-check, with mingw-w64 by apt);
# wasm-bindgen-cli at the wasm-bindgen version of Cargo.lock (cargo install, ~2-3 min);
# openssl, chromium, chromium-driver, firefox-esr, nodejs and npm with apt-get (as root);
# playwright-core, puppeteer-core and typescript with npm ci in web/test (no browser download). scripts/toolchain.sh has
# the shared install steps.
#
# Usage: scripts/test.sh [PART...], PART one of
#   native   formatting, clippy (native, wasm32, Windows), cargo test, the fuzz corpus, the README
#            example (needs only Rust and openssl; no browser, no root)
#   browser  the browser stacks in headless Chromium (the WebRTC step needs root)
#   npm      the npm package: build, pack, types, end to end in Chromium
#   demo     the www demo end to end (needs root)
#   smoke    the example programs (racing-demo, tapscat over every stack)
# Without a PART: all of them, in this order (what CI runs).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

ALL_PARTS="native browser npm demo smoke"
PARTS="${*:-$ALL_PARTS}"
for part in $PARTS; do
    case " $ALL_PARTS " in
    *" $part "*) ;;
    *)
        echo "scripts/test.sh: unknown part \`$part\`; the parts are: $ALL_PARTS" >&2
        exit 2
        ;;
    esac
done
# want PART...: whether any of these parts runs.
want() {
    local w
    for w in "$@"; do
        case " $PARTS " in *" $w "*) return 0 ;; esac
    done
    return 1
}
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
BIN="$TARGET_DIR/debug"

TMP="$(mktemp -d)"
PIDS=()
cleanup() {
    local rc=$?
    # A linker crash or an I/O error can mean a full disk: a failed run says how much is left.
    [ "$rc" -eq 0 ] || printf 'disk: %s\n' "$(free_disk 2>/dev/null)" >&2
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    rm -rf "$TMP"
}
trap cleanup EXIT

STEP=0
STEP_START=$SECONDS
step() {
    [ "$STEP" -gt 0 ] && printf '(step %d took %ds)\n' "$STEP" "$((SECONDS - STEP_START))"
    STEP_START=$SECONDS
    STEP=$((STEP + 1))
    printf '\n\033[1m==> [%d] %s\033[0m\n' "$STEP" "$*"
}
fail() {
    printf '\033[31mFAILED: %s\033[0m\n' "$*" >&2
    exit 1
}

# A whole-suite run builds every crate once; incremental caches would add about 2 GB of
# disk and save nothing here. An explicit CARGO_INCREMENTAL wins.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

# shellcheck source=scripts/toolchain.sh
. scripts/toolchain.sh

# Inside a new network namespace (unshare -n): loopback, and a veth with a default route.
# Firefox gathers no ICE candidate in a namespace with loopback alone.
loopback_and_default_route() {
    ip link set lo up
    ip link add v0 type veth peer name v1
    ip addr add 10.9.9.1/24 dev v0
    ip link set v0 up
    ip link set v1 up
    ip route add default dev v0
}
export -f loopback_and_default_route

# disk_dir: where the target directory is (or, before the first build, would be).
disk_dir() {
    if [ -d "$TARGET_DIR" ]; then echo "$TARGET_DIR"; else echo "$ROOT"; fi
}
# free_disk: what is free there, for the log.
free_disk() {
    df -h "$(disk_dir)" | awk 'NR == 2 { print $4 " free on " $6 }'
}

NEED_GB=4
step "free disk space (the suite's builds take about $NEED_GB GB)"
avail_kb="$(df -Pk "$(disk_dir)" | awk 'NR == 2 { print $4 }')"
free_disk
[ "$avail_kb" -ge $((NEED_GB * 1024 * 1024)) ] ||
    echo "warning: less than $NEED_GB GB free; a build may fail with 'No space left on device' or a linker crash" >&2

step "wasm32-unknown-unknown target"
ensure_wasm_target

if want native; then
step "openssl (TLS interop tests)"
if command -v openssl >/dev/null; then
    openssl version
elif [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && apt-get install -y -qq openssl
else
    fail "openssl is missing: apt-get install openssl"
fi

step "cargo fmt --all -- --check"
cargo fmt --all -- --check

step "cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

step "cargo clippy --target wasm32-unknown-unknown -p postsocket --all-targets -- -D warnings"
cargo clippy --target wasm32-unknown-unknown -p postsocket --all-targets -- -D warnings

step "cargo test --workspace"
cargo test --workspace

step "PathChange natively: interface addresses changed in a network namespace of the test's own (cargo test --test path_change -- --ignored; needs root)"
[ "$(id -u)" -eq 0 ] || fail "this step needs root for its network namespace; run scripts/test.sh as root (CI does)"
command -v ip >/dev/null || fail "ip (iproute2) is needed for the PathChange step"
cargo test --test path_change -- --ignored

step "fuzzing corpus replay: every input of fuzz/corpus and fuzz/regressions through its harness (cargo test --features fuzzing --test fuzz_corpus)"
cargo test --features fuzzing --test fuzz_corpus

step "cargo check --target wasm32-unknown-unknown -p postsocket"
cargo check --target wasm32-unknown-unknown -p postsocket

step "cargo doc -p postsocket, native and wasm32, and -p postsocket-web, with warnings as errors (what docs.rs builds: broken links fail)"
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps -p postsocket
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps -p postsocket --target wasm32-unknown-unknown
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps -p postsocket-web --target wasm32-unknown-unknown

step "features per stack: the minimal build (TCP and UDP only) passes clippy and its tests; each stack feature alone passes clippy"
cargo clippy -p postsocket --no-default-features -- -D warnings
cargo test -p postsocket --no-default-features --lib --test minimal_build
for feature in tls quic ws wt webrtc; do
    echo "  --features $feature"
    cargo clippy -p postsocket --no-default-features --features "$feature" -- -D warnings
done

step "Windows cross-check: cargo clippy --target x86_64-pc-windows-gnu -p postsocket --all-targets (platform-only socket options are behind cfg)"
ensure_windows_cross
cargo clippy --target x86_64-pc-windows-gnu -p postsocket --all-targets -- -D warnings

step "cargo publish --dry-run -p postsocket: the crate as published (src, README, CHANGELOG, licenses) builds on its own"
# --allow-dirty: a local run may have uncommitted changes; CI runs on a clean clone.
cargo publish --dry-run --allow-dirty -p postsocket
fi

if want browser npm demo; then
step "chromium and chromedriver (browser tests)"
CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
CHROMEDRIVER="${CHROMEDRIVER:-/usr/bin/chromedriver}"
APT_PID=""
if [ -x "$CHROMIUM" ] && [ -x "$CHROMEDRIVER" ]; then
    echo "already installed"
elif [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
    # In the background, while wasm-bindgen-cli builds (the next step waits for it).
    echo "installing chromium chromium-driver with apt-get in the background ($TMP/apt.log)"
    (timeout 600 apt-get update -qq &&
        DEBIAN_FRONTEND=noninteractive timeout 900 apt-get install -y -qq chromium chromium-driver) \
        >"$TMP/apt.log" 2>&1 &
    APT_PID=$!
else
    fail "Chromium or chromedriver is missing ($CHROMIUM, $CHROMEDRIVER): as root, apt-get install chromium chromium-driver"
fi

step "wasm-bindgen-cli at the wasm-bindgen version of Cargo.lock"
ensure_wasm_bindgen
if [ -n "$APT_PID" ]; then
    echo "waiting for apt-get install chromium chromium-driver"
    wait "$APT_PID" || { tail -20 "$TMP/apt.log" >&2; fail "apt-get install chromium chromium-driver failed"; }
fi
[ -x "$CHROMIUM" ] && [ -x "$CHROMEDRIVER" ] || fail "no $CHROMIUM or $CHROMEDRIVER after installing"
"$CHROMIUM" --version 2>/dev/null  # its Debian wrapper script warns about /dev/shm on stderr
"$CHROMEDRIVER" --version
fi

if want browser npm; then
step "ws-echo: the WebSocket and WebTransport echo server the browser tests and the npm package test talk to"
cargo build -p postsocket-examples --bin ws-echo
timeout 900 "$BIN/ws-echo" 0 >"$TMP/ws-echo.out" 2>"$TMP/ws-echo.err" &
PIDS+=("$!")
# Three POSTSOCKET_WS_* lines (WebSocket) and three POSTSOCKET_WT_* lines (WebTransport).
for _ in $(seq 1 100); do
    [ "$(grep -c '^POSTSOCKET_W[ST]_' "$TMP/ws-echo.out")" -ge 6 ] && break
    sleep 0.1
done
[ "$(grep -c '^POSTSOCKET_W[ST]_' "$TMP/ws-echo.out")" -ge 6 ] ||
    { cat "$TMP/ws-echo.err" >&2; fail "ws-echo printed no ports"; }
cat "$TMP/ws-echo.out"
fi

if want browser; then
step "browser tests in headless Chromium: the racing engine's scripts, the Promise executor, and the WebSocket stack against ws-echo"
# webdriver.json for one step: its flags, this machine's Chromium, and a fresh profile of the
# step's own, so that no step sees what another left in its profile.
webdriver_json() {
    sed "s|\"--disable-sync\"|\"--disable-sync\", \"--user-data-dir=$TMP/chromium-profile-$1\"|; s|\"/usr/bin/chromium\"|\"$CHROMIUM\"|" \
        webdriver.json >"$TMP/webdriver-$1.json"
    echo "$TMP/webdriver-$1.json"
}
# The ports reach the tests at compile time (option_env!).
env $(cat "$TMP/ws-echo.out") CHROMEDRIVER="$CHROMEDRIVER" \
    WASM_BINDGEN_TEST_WEBDRIVER_JSON="$(webdriver_json core)" WASM_BINDGEN_TEST_TIMEOUT=60 \
    timeout 900 cargo test --target wasm32-unknown-unknown -p postsocket --test racing_engine --test racing_history \
        --test browser_websocket ||
    { cat "$TMP/ws-echo.err" >&2; fail "browser tests failed"; }
# The npm package's executor lives in postsocket-web (web/), beside the bindings it runs.
env $(cat "$TMP/ws-echo.out") CHROMEDRIVER="$CHROMEDRIVER" \
    WASM_BINDGEN_TEST_WEBDRIVER_JSON="$(webdriver_json executor)" WASM_BINDGEN_TEST_TIMEOUT=60 \
    timeout 900 cargo test --target wasm32-unknown-unknown -p postsocket-web --test executor ||
    { cat "$TMP/ws-echo.err" >&2; fail "browser tests of the npm package's executor failed"; }

step "browser tests in headless Chromium: the WebTransport stack against ws-echo (postsocket's Listener)"
env $(cat "$TMP/ws-echo.out") CHROMEDRIVER="$CHROMEDRIVER" \
    WASM_BINDGEN_TEST_WEBDRIVER_JSON="$(webdriver_json webtransport)" WASM_BINDGEN_TEST_TIMEOUT=60 \
    timeout 900 cargo test --target wasm32-unknown-unknown -p postsocket --test browser_webtransport ||
    { cat "$TMP/ws-echo.err" >&2; fail "browser WebTransport tests failed"; }

step "browser tests in headless Chromium: the TransportContext with WebTransport blackholed (12 races, the page's WebTransport budget)"
env $(cat "$TMP/ws-echo.out") CHROMEDRIVER="$CHROMEDRIVER" \
    WASM_BINDGEN_TEST_WEBDRIVER_JSON="$(webdriver_json context)" WASM_BINDGEN_TEST_TIMEOUT=120 \
    timeout 900 cargo test --target wasm32-unknown-unknown -p postsocket --test browser_transport_context -- --nocapture ||
    { cat "$TMP/ws-echo.err" >&2; fail "browser TransportContext tests failed"; }

step "browser tests in headless Chromium: WebRTC data channels with the native str0m peer (webrtc-echo), in a loopback-only network namespace"
# The echo peer, chromedriver and Chromium run in one private network namespace with only
# loopback (unshare -n), so ICE gathers loopback candidates only and nothing leaves the machine.
[ "$(id -u)" -eq 0 ] ||
    fail "the WebRTC browser step needs root for its network namespace (unshare -n); run scripts/test.sh as root (CI does)"
command -v unshare >/dev/null && command -v ip >/dev/null ||
    fail "unshare (util-linux) and ip (iproute2) are needed for the WebRTC browser step"
cargo build -p postsocket-examples --bin webrtc-echo
# The namespace is fresh, so a fixed port is free in it; the URL reaches the tests at compile
# time (option_env!), so compile here, run inside.
WEBRTC_PORT=18080
WEBRTC_URL="http://127.0.0.1:$WEBRTC_PORT/offer"
POSTSOCKET_WEBRTC_SIGNALING="$WEBRTC_URL" \
    cargo test --target wasm32-unknown-unknown -p postsocket --test browser_webrtc --no-run
# webdriver.json plus the two flags Chromium needs for WebRTC on loopback: it gathers no
# loopback ICE candidates without them, and asks for media permission without the second.
sed "s|\"--disable-sync\"|\"--disable-sync\", \"--user-data-dir=$TMP/chromium-webrtc-profile\", \"--allow-loopback-in-peer-connection\", \"--use-fake-ui-for-media-stream\"|; s|\"/usr/bin/chromium\"|\"$CHROMIUM\"|" \
    webdriver.json >"$TMP/webdriver-webrtc.json"
grep -q -- "--allow-loopback-in-peer-connection" "$TMP/webdriver-webrtc.json" ||
    fail "could not add the WebRTC flags to webdriver.json"
export BIN TMP WEBRTC_PORT WEBRTC_URL CHROMEDRIVER
timeout 900 unshare -n bash -c '
    set -euo pipefail
    ip link set lo up
    "$BIN/webrtc-echo" "$WEBRTC_PORT" >"$TMP/webrtc-echo.out" 2>"$TMP/webrtc-echo.err" &
    echo_pid=$!
    trap "kill $echo_pid 2>/dev/null || true" EXIT
    for _ in $(seq 1 100); do
        grep -q "^POSTSOCKET_WEBRTC_SIGNALING=$WEBRTC_URL\$" "$TMP/webrtc-echo.out" && break
        sleep 0.1
    done
    grep -q "^POSTSOCKET_WEBRTC_SIGNALING=$WEBRTC_URL\$" "$TMP/webrtc-echo.out" ||
        { cat "$TMP/webrtc-echo.err" >&2; echo "webrtc-echo did not start on $WEBRTC_URL" >&2; exit 1; }
    cat "$TMP/webrtc-echo.out"
    POSTSOCKET_WEBRTC_SIGNALING="$WEBRTC_URL" CHROMEDRIVER="$CHROMEDRIVER" \
        WASM_BINDGEN_TEST_WEBDRIVER_JSON="$TMP/webdriver-webrtc.json" WASM_BINDGEN_TEST_TIMEOUT=60 \
        cargo test --offline --target wasm32-unknown-unknown -p postsocket --test browser_webrtc ||
        { cat "$TMP/webrtc-echo.err" >&2; exit 1; }
' || fail "WebRTC browser tests failed"
fi

if want npm demo; then
step "npm package: clippy (wasm32), scripts/build-npm.sh (release wasm, env-import guard, wasm-bindgen)"
ensure_node  # Node >= 20: playwright-core needs it
cargo clippy --target wasm32-unknown-unknown -p postsocket-web --all-targets -- -D warnings
node web/tools/check-wasm-imports.mjs --self-test
scripts/build-npm.sh "$ROOT/web/pkg"
fi

if want npm; then
step "npm package: npm pack holds the .wasm, the JS (with the glue's snippets) and the .d.ts"
(cd web/pkg && npm pack --pack-destination "$TMP" --silent >"$TMP/pack.name") || fail "npm pack failed"
TARBALL="$TMP/$(tail -1 "$TMP/pack.name")"
tar tzf "$TARBALL" | sort >"$TMP/pack.list"
cat "$TMP/pack.list"
for f in postsocket_web_bg.wasm postsocket_web.js postsocket_web.d.ts index.js index.d.ts package.json README.md; do
    grep -qx "package/$f" "$TMP/pack.list" || fail "$(basename "$TARBALL") lacks $f"
done
# The JS that the wasm-bindgen glue imports (inline_js snippets) must ship too.
for f in $(grep -o "from '\./snippets/[^']*'" web/pkg/postsocket_web.js | sed "s|from '\./||; s|'\$||"); do
    grep -qx "package/$f" "$TMP/pack.list" || fail "$(basename "$TARBALL") lacks $f (imported by postsocket_web.js)"
done

fi

if want npm demo; then
step "npm package: npm ci (playwright-core, typescript) and tsc --strict over the types"
(cd web/test && timeout 600 npm ci --no-audit --no-fund --silent) || fail "npm ci in web/test failed"
(cd web/test && timeout 120 npx --no-install tsc -p tsconfig.json) || fail "the package's TypeScript types do not check"
echo "web/test/types.ts type-checks against web/pkg/index.d.ts"
fi

if want npm; then
step "npm package in headless Chromium (Playwright): the example page and the package against ws-echo"
env $(cat "$TMP/ws-echo.out") CHROMIUM="$CHROMIUM" timeout 300 node web/test/e2e.mjs ||
    { cat "$TMP/ws-echo.err" >&2; fail "npm package browser tests failed"; }

step "npm package in headless Firefox ESR (puppeteer-core over WebDriver BiDi): the same checks"
ensure_firefox
env $(cat "$TMP/ws-echo.out") BROWSER=firefox FIREFOX="$FIREFOX" timeout 300 node web/test/e2e.mjs ||
    { cat "$TMP/ws-echo.err" >&2; fail "npm package tests in Firefox failed"; }

step "npm package: WebRTC Rendezvous with the native peer (webrtc-echo) in Chromium and Firefox, and an Abort (a failure to the peer in Chromium; a clean close in Firefox, as the README says), in a network namespace (loopback, and a veth with a default route: Firefox gathers no ICE candidate without one)"
[ "$(id -u)" -eq 0 ] || fail "this step needs root for its network namespace (unshare -n); run scripts/test.sh as root (CI does)"
cargo build -p postsocket-examples --bin webrtc-echo
export BIN TMP CHROMIUM FIREFOX
timeout 300 unshare -n bash -c '
    set -euo pipefail
    loopback_and_default_route
    "$BIN/webrtc-echo" 18081 >"$TMP/webrtc-echo-npm.out" 2>"$TMP/webrtc-echo-npm.err" &
    echo_pid=$!
    trap "kill $echo_pid 2>/dev/null || true" EXIT
    for _ in $(seq 1 100); do
        grep -q "^POSTSOCKET_WEBRTC_SIGNALING=" "$TMP/webrtc-echo-npm.out" && break
        sleep 0.1
    done
    for browser in chromium firefox; do
        env $(cat "$TMP/webrtc-echo-npm.out") WEBRTC_ECHO_LOG="$TMP/webrtc-echo-npm.err" BROWSER=$browser node web/test/rendezvous.mjs ||
            { cat "$TMP/webrtc-echo-npm.err" >&2; exit 1; }
    done
' || fail "WebRTC Rendezvous from the npm package failed"
fi

if want demo; then
step "www demo end to end in headless Chromium (Playwright, in a loopback-only network namespace): WebTransport blackholed -> WebSocket wins; WebRTC rendezvous; a native race view; export/import; phone width"
cargo build -p postsocket-examples --bin demo-server
export ROOT CHROMIUM BIN TMP
timeout 300 unshare -n bash -c '
    set -euo pipefail
    ip link set lo up
    DEMO_SERVER="$BIN/demo-server" PKG="$ROOT/web/pkg" CHROMIUM="$CHROMIUM" SHOTS="$TMP/screenshots" \
        node "$ROOT/www/test/demo.e2e.mjs"
' || fail "the www demo end-to-end test failed"
ls "$TMP/screenshots/chromium"

step "www demo end to end in Firefox ESR (puppeteer-core over WebDriver BiDi), the same steps, in a network namespace with loopback and a veth with a default route (Firefox gathers no ICE candidate without one)"
ensure_firefox
export FIREFOX
timeout 300 unshare -n bash -c '
    set -euo pipefail
    loopback_and_default_route
    DEMO_SERVER="$BIN/demo-server" PKG="$ROOT/web/pkg" BROWSER=firefox FIREFOX="$FIREFOX" \
        SHOTS="$TMP/screenshots" node "$ROOT/www/test/demo.e2e.mjs"
' || fail "the www demo end-to-end test failed in Firefox"
ls "$TMP/screenshots/firefox"
fi

if want native; then
step "README example is identical to native-examples/src/bin/readme-example.rs"
# The README block is the first ```rust block after the marker comment.
awk '/<!-- readme-example -->/ {m=1; next} m==1 && /^```rust/ {m=2; next} m==2 && /^```/ {exit} m==2 {print}' \
    README.md >"$TMP/readme-block.rs"
awk '/^\/\/ README-END/ {exit} m {print} /^\/\/ README-BEGIN/ {m=1}' \
    native-examples/src/bin/readme-example.rs >"$TMP/readme-file.rs"
[ -s "$TMP/readme-block.rs" ] || fail "no rust block after <!-- readme-example --> in README.md"
diff -u "$TMP/readme-block.rs" "$TMP/readme-file.rs" || fail "README example and readme-example.rs differ"
echo "identical ($(wc -l <"$TMP/readme-file.rs") lines)"
fi

if want smoke; then
step "build the example programs"
cargo build -p postsocket-examples --bins

step "smoke test: racing-demo"
timeout 30 "$BIN/racing-demo" || fail "racing-demo exited with $?"

# tapscat_echo NAME [OPTIONS...]: start `tapscat --listen --echo OPTIONS 127.0.0.1 0`, find its
# port in its "listening on ADDR" line, pipe two lines through `tapscat OPTIONS 127.0.0.1 PORT`
# and check that both come back; then stop the listener.
tapscat_echo() {
    local name="$1"
    shift
    timeout 60 "$BIN/tapscat" --listen --echo "$@" 127.0.0.1 0 2>"$TMP/$name.err" &
    local listener=$!
    PIDS+=("$listener")
    local port=""
    for _ in $(seq 1 100); do
        port="$(sed -n 's/^listening on .*:\([0-9][0-9]*\)$/\1/p' "$TMP/$name.err")"
        [ -n "$port" ] && break
        sleep 0.1
    done
    [ -n "$port" ] || { cat "$TMP/$name.err" >&2; fail "tapscat --listen $* printed no port"; }
    echo "listener on port $port"
    printf 'hello postsocket\nsecond line\n' | timeout 10 "$BIN/tapscat" "$@" 127.0.0.1 "$port" >"$TMP/$name.out" ||
        fail "tapscat $* client exited with $?"
    printf 'hello postsocket\nsecond line\n' | diff -u - "$TMP/$name.out" || fail "tapscat $* echo differs"
    echo "both lines came back"
    kill "$listener" 2>/dev/null || true
}

step "smoke test: tapscat --listen --echo (TCP, line framer), then tapscat sends two lines"
tapscat_echo tcp

step "smoke test: tapscat --context FILE restores before and saves after; a corrupt file is reported and ignored"
timeout 60 "$BIN/tapscat" --listen --echo 127.0.0.1 0 2>"$TMP/ctx-listener.err" &
PIDS+=("$!")
port=""
for _ in $(seq 1 100); do
    port="$(sed -n 's/^listening on .*:\([0-9][0-9]*\)$/\1/p' "$TMP/ctx-listener.err")"
    [ -n "$port" ] && break
    sleep 0.1
done
[ -n "$port" ] || { cat "$TMP/ctx-listener.err" >&2; fail "tapscat --listen printed no port"; }
ctx="$TMP/context.json"
printf 'one\n' | timeout 10 "$BIN/tapscat" --context "$ctx" 127.0.0.1 "$port" >/dev/null || fail "tapscat --context (first run) exited with $?"
grep -q '"format":"postsocket-transport-context"' "$ctx" || fail "no TransportContext saved in $ctx"
grep -q "\"target\":\"127.0.0.1:$port\"" "$ctx" || fail "$ctx does not remember 127.0.0.1:$port"
# The second run races 127.0.0.2 (nothing listens there) before 127.0.0.1, unless it remembers.
printf 'two\n' | timeout 10 "$BIN/tapscat" --context "$ctx" --trace "$TMP/ctx-trace.jsonl" 127.0.0.2,127.0.0.1 "$port" >"$TMP/ctx.out" ||
    fail "tapscat --context (second run) exited with $?"
grep -q '"event":"reordered".*127.0.0.1:[0-9]* first: it worked' "$TMP/ctx-trace.jsonl" || { cat "$TMP/ctx-trace.jsonl"; fail "the second race did not use what the first learned"; }
first="$(grep -m1 '"event":"attempt_started"' "$TMP/ctx-trace.jsonl" | sed 's/.*"id":"\([^"]*\)".*/\1/')"
grep -q "\"event\":\"candidate\",\"id\":\"$first\".*\"address\":\"127.0.0.1:$port\"" "$TMP/ctx-trace.jsonl" ||
    { cat "$TMP/ctx-trace.jsonl"; fail "the address that worked did not start first"; }
echo "not json" >"$ctx"
printf 'three\n' | timeout 10 "$BIN/tapscat" --context "$ctx" 127.0.0.1 "$port" >"$TMP/ctx.out" 2>"$TMP/ctx.err" ||
    fail "tapscat with a corrupt --context file exited with $?"
grep -q "is not a TransportContext this build can read" "$TMP/ctx.err" || { cat "$TMP/ctx.err"; fail "the corrupt context file was not reported"; }
[ "$(cat "$TMP/ctx.out")" = three ] || fail "tapscat with a corrupt context file did not echo"
grep -q '"format":"postsocket-transport-context"' "$ctx" || fail "the corrupt file was not replaced by a fresh context"
echo "learned, restored, and a corrupt file reported: ok"

step "smoke test: the same over UDP (tapscat --protocol udp)"
tapscat_echo udp --protocol udp

step "smoke test: the same over a WebRTC data channel (tapscat --protocol webrtc: Rendezvous by HTTP signaling)"
tapscat_echo webrtc --protocol webrtc

step "smoke test: the same over WebSocket (tapscat --protocol ws --ws-path /echo)"
tapscat_echo ws --protocol ws --ws-path /echo

step "smoke test: tapscat --protocol tls --self-signed listener; clients trust it by pin, then by --ca"
timeout 60 "$BIN/tapscat" --listen --echo --protocol tls --self-signed 127.0.0.1 0 2>"$TMP/tls.err" &
PIDS+=("$!")
port=""
for _ in $(seq 1 100); do
    port="$(sed -n 's/^listening on .*:\([0-9][0-9]*\)$/\1/p' "$TMP/tls.err")"
    [ -n "$port" ] && break
    sleep 0.1
done
[ -n "$port" ] || { cat "$TMP/tls.err" >&2; fail "tapscat --listen --protocol tls printed no port"; }
pin="$(sed -n 's/^sha256 \([0-9a-f]*\)$/\1/p' "$TMP/tls.err")"
pem="$(sed -n 's/^certificate \(.*\)$/\1/p' "$TMP/tls.err")"
[ -n "$pin" ] && [ -f "$pem" ] || { cat "$TMP/tls.err" >&2; fail "no pin or certificate path printed"; }
echo "listener on port $port, pin $pin"
printf 'hello tls\nsecond line\n' | timeout 10 "$BIN/tapscat" --protocol tls --pin-sha256 "$pin" 127.0.0.1 "$port" >"$TMP/tls-pin.out" ||
    fail "tapscat --pin-sha256 client exited with $?"
printf 'hello tls\nsecond line\n' | diff -u - "$TMP/tls-pin.out" || fail "TLS echo (pin) differs"
printf 'hello tls\n' | timeout 10 "$BIN/tapscat" --protocol tls --ca "$pem" localhost "$port" >"$TMP/tls-ca.out" ||
    fail "tapscat --ca client exited with $?"
printf 'hello tls\n' | diff -u - "$TMP/tls-ca.out" || fail "TLS echo (ca) differs"
echo "both clients got their lines back"
set +e
timeout 10 "$BIN/tapscat" --protocol tls 127.0.0.1 "$port" </dev/null 2>"$TMP/tls-untrusted.err"
rc=$?
set -e
cat "$TMP/tls-untrusted.err"
[ "$rc" -eq 2 ] || fail "an untrusted TLS server: expected exit code 2, got $rc"
grep -q "UnknownIssuer" "$TMP/tls-untrusted.err" || fail "the error does not say the issuer is unknown"
rm -f "$pem"

# secure_listener NAME [OPTIONS...]: start `tapscat --listen --echo --self-signed OPTIONS 127.0.0.1 0`;
# set $port and $pin from its stderr.
secure_listener() {
    local name="$1"
    shift
    timeout 60 "$BIN/tapscat" --listen --echo --self-signed "$@" 127.0.0.1 0 2>"$TMP/$name.err" &
    PIDS+=("$!")
    port=""
    pin=""
    for _ in $(seq 1 100); do
        port="$(sed -n 's/^listening on .*:\([0-9][0-9]*\)$/\1/p' "$TMP/$name.err")"
        [ -n "$port" ] && break
        sleep 0.1
    done
    [ -n "$port" ] || { cat "$TMP/$name.err" >&2; fail "tapscat --listen $* printed no port"; }
    pin="$(sed -n 's/^sha256 \([0-9a-f]*\)$/\1/p' "$TMP/$name.err")"
    [ -n "$pin" ] || { cat "$TMP/$name.err" >&2; fail "tapscat --listen $* printed no pin"; }
    rm -f "$(sed -n 's/^certificate \(.*\)$/\1/p' "$TMP/$name.err")"
    echo "listener on port $port, pin $pin"
}

step "smoke test: tapscat --protocol quic --self-signed listener; a --protocol quic client trusts it by pin"
secure_listener quic --protocol quic
printf 'hello quic\nsecond line\n' | timeout 10 "$BIN/tapscat" --protocol quic --pin-sha256 "$pin" 127.0.0.1 "$port" >"$TMP/quic.out" ||
    fail "tapscat --protocol quic client exited with $?"
printf 'hello quic\nsecond line\n' | diff -u - "$TMP/quic.out" || fail "QUIC echo differs"
echo "both lines came back over QUIC"

step "smoke test: tapscat --protocol wt --self-signed listener (WebTransport); a client trusts it by pin"
secure_listener wt --protocol wt
printf 'hello webtransport\nsecond line\n' | timeout 10 "$BIN/tapscat" --protocol wt --pin-sha256 "$pin" 127.0.0.1 "$port" >"$TMP/wt.out" ||
    fail "tapscat --protocol wt client exited with $?"
printf 'hello webtransport\nsecond line\n' | diff -u - "$TMP/wt.out" || fail "WebTransport echo differs"
echo "both lines came back over WebTransport"

step "smoke test: a listener on quic and tls; a client without --protocol races them and QUIC wins"
secure_listener race --protocol quic --protocol tls
printf 'raced\n' | timeout 10 "$BIN/tapscat" --pin-sha256 "$pin" --trace - 127.0.0.1 "$port" \
    >"$TMP/race.out" 2>"$TMP/race.trace" || { cat "$TMP/race.trace" >&2; fail "racing client exited with $?"; }
printf 'raced\n' | diff -u - "$TMP/race.out" || fail "raced echo differs"
won="$(sed -n 's/.*"event":"won","id":"\([^"]*\)".*/\1/p' "$TMP/race.trace")"
[ -n "$won" ] || { cat "$TMP/race.trace" >&2; fail "the trace has no won event"; }
grep -q "\"event\":\"candidate\",\"id\":\"$won\",.*\"stack\":\"quic\"" "$TMP/race.trace" ||
    { cat "$TMP/race.trace" >&2; fail "candidate $won won, but it is not a QUIC candidate"; }
grep -q '"stack":"tls"' "$TMP/race.trace" || { cat "$TMP/race.trace" >&2; fail "TLS was not a candidate"; }
echo "candidate $won (quic) won; the TLS candidate was in the race"
# The same listener serves TLS over TCP on the same port number.
printf 'over tls\n' | timeout 10 "$BIN/tapscat" --protocol tls --pin-sha256 "$pin" 127.0.0.1 "$port" >"$TMP/race-tls.out" ||
    fail "tapscat --protocol tls client (quic+tls listener) exited with $?"
printf 'over tls\n' | diff -u - "$TMP/race-tls.out" || fail "TLS echo from the quic+tls listener differs"
echo "the same port answers TLS over TCP"

step "smoke test: tapscat reports an establishment error (exit 2)"
set +e
timeout 10 "$BIN/tapscat" --protocol tcp 127.0.0.1 1 </dev/null 2>"$TMP/refused.err"
rc=$?
set -e
cat "$TMP/refused.err"
[ "$rc" -eq 2 ] || fail "expected exit code 2, got $rc"
grep -q "candidate" "$TMP/refused.err" || fail "the error lists no candidate"
fi

printf '(step %d took %ds)\n' "$STEP" "$((SECONDS - STEP_START))"
echo "disk after the run: $(free_disk); target directory: $(du -sh "$TARGET_DIR" 2>/dev/null | cut -f1)"
printf '\n\033[32mall %d steps passed in %ds (%s)\033[0m\n' "$STEP" "$SECONDS" "$PARTS"
