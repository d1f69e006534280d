#!/usr/bin/env bash
# Build the npm package `postsocket` (web/) into web/pkg (or the directory given):
# the wasm32 build of the postsocket-web crate, wasm-bindgen's JS glue and types,
# the hand-written wrapper (web/npm/index.js, index.d.ts), package.json and README.
# Then `cd web/pkg && npm pack` makes the tarball.
#
# Needs: rustup + cargo, wasm-bindgen-cli at the wasm-bindgen version of Cargo.lock
# (scripts/test.sh installs it), node (the import guard). Optional: WASM_OPT=path to a
# working wasm-opt (the npm package `binaryen`; Debian's wasm-opt, binaryen 108, makes modules that fail at
# run time with "WebAssembly.Table.set(): Argument 1 is invalid for table").
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
OUT="${1:-$ROOT/web/pkg}"
PROFILE=web-release

fail() {
    printf '\033[31mbuild-npm: %s\033[0m\n' "$*" >&2
    exit 1
}

rustup target list --installed | grep -qx wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown
command -v node >/dev/null || fail "node is missing (needed for the wasm import check)"
WB_VERSION="$(awk '/^name = "wasm-bindgen"$/ {getline; gsub(/"/, "", $3); print $3; exit}' Cargo.lock)"
HAVE="$(wasm-bindgen --version 2>/dev/null | awk '{print $2}')" || true
[ "$HAVE" = "$WB_VERSION" ] ||
    fail "wasm-bindgen-cli $WB_VERSION is needed (Cargo.lock), found '${HAVE:-none}': cargo install wasm-bindgen-cli --version $WB_VERSION"

cargo build --profile "$PROFILE" --target wasm32-unknown-unknown -p postsocket-web
WASM="$TARGET_DIR/wasm32-unknown-unknown/$PROFILE/postsocket_web.wasm"
[ -f "$WASM" ] || fail "no $WASM after the build"

# Guard: the browser build imports nothing from `env` (non-web code leaking in).
node web/tools/check-wasm-imports.mjs "$WASM" || fail "the wasm32 build imports from \`env\` (see above)"

rm -rf "$OUT"
mkdir -p "$OUT"
wasm-bindgen --target web --out-dir "$OUT" --out-name postsocket_web "$WASM"
rm -f "$OUT/.gitignore" # wasm-bindgen writes one that would hide the package from npm
if [ -n "${WASM_OPT:-}" ]; then
    "$WASM_OPT" -Oz --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext \
        --enable-reference-types --enable-multivalue \
        "$OUT/postsocket_web_bg.wasm" -o "$OUT/postsocket_web_bg.wasm" || fail "wasm-opt failed"
fi
node web/tools/check-wasm-imports.mjs "$OUT/postsocket_web_bg.wasm" >/dev/null ||
    fail "the packaged .wasm imports from \`env\`"
cp web/npm/package.json web/npm/index.js web/npm/index.d.ts web/README.md "$OUT/"
printf 'built %s: %s bytes of wasm (%s gzipped)\n' "$OUT" \
    "$(wc -c <"$OUT/postsocket_web_bg.wasm")" "$(gzip -9c "$OUT/postsocket_web_bg.wasm" | wc -c)"
