# Sourced by scripts/test.sh and scripts/demo.sh: install what the wasm32
# build needs, or say exactly what is missing. Needs `fail` defined.

# The wasm32-unknown-unknown target (rustup).
ensure_wasm_target() {
    if rustup target list --installed | grep -qx wasm32-unknown-unknown; then
        echo "wasm32-unknown-unknown: already installed"
    else
        rustup target add wasm32-unknown-unknown || fail "rustup target add wasm32-unknown-unknown failed"
    fi
}

# wasm-bindgen-cli at exactly the wasm-bindgen version of Cargo.lock (a few
# minutes the first time). No --locked: with it, cargo install fails on a
# yanked transitive version in wasm-bindgen-cli's own lock file.
ensure_wasm_bindgen() {
    local want have
    want="$(awk '/^name = "wasm-bindgen"$/ {getline; gsub(/"/, "", $3); print $3; exit}' Cargo.lock)"
    [ -n "$want" ] || fail "no wasm-bindgen in Cargo.lock"
    have="$(wasm-bindgen --version 2>/dev/null | awk '{print $2}')" || true
    if command -v wasm-bindgen-test-runner >/dev/null && [ "$have" = "$want" ]; then
        echo "wasm-bindgen $want: already installed"
    else
        echo "installing wasm-bindgen-cli $want (a few minutes; found '${have:-none}')"
        timeout 1200 cargo install wasm-bindgen-cli --version "$want" ||
            fail "cargo install wasm-bindgen-cli --version $want failed"
    fi
}

# The Windows cross-check: the x86_64-pc-windows-gnu target (rustup) and the
# mingw-w64 C compiler that ring's build needs for it (apt, as root).
ensure_windows_cross() {
    if rustup target list --installed | grep -qx x86_64-pc-windows-gnu; then
        echo "x86_64-pc-windows-gnu: already installed"
    else
        rustup target add x86_64-pc-windows-gnu || fail "rustup target add x86_64-pc-windows-gnu failed"
    fi
    if command -v x86_64-w64-mingw32-gcc >/dev/null; then
        echo "mingw-w64: already installed"
    elif [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gcc-mingw-w64-x86-64 ||
            fail "apt-get install gcc-mingw-w64-x86-64 failed"
    else
        fail "x86_64-w64-mingw32-gcc is missing (ring's build for Windows needs it): as root, apt-get install gcc-mingw-w64-x86-64"
    fi
}

# Firefox ESR (the npm package's and the demo's tests in a second browser): $FIREFOX, or
# Debian's firefox-esr, installed with apt as root. Sets FIREFOX.
ensure_firefox() {
    FIREFOX="${FIREFOX:-/usr/bin/firefox-esr}"
    if [ ! -x "$FIREFOX" ]; then
        [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null ||
            fail "Firefox ESR is missing ($FIREFOX): as root, apt-get install firefox-esr"
        DEBIAN_FRONTEND=noninteractive timeout 900 apt-get install -y -qq firefox-esr >"${TMP:-/tmp}/apt-firefox.log" 2>&1 ||
            { tail -20 "${TMP:-/tmp}/apt-firefox.log" >&2; fail "apt-get install firefox-esr failed"; }
    fi
    "$FIREFOX" --version
}

# node and npm (the npm package's checks and browser tests).
ensure_node() {
    command -v node >/dev/null && command -v npm >/dev/null && { node --version; return; }
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm ||
            fail "apt-get install nodejs npm failed"
    else
        fail "node and npm are missing: as root, apt-get install nodejs npm"
    fi
}
