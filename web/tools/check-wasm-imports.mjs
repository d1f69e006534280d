// Usage: node check-wasm-imports.mjs FILE.wasm
// Fails (exit 1) when the module imports anything from module `env`: a sign
// that non-web code (libc, std I/O, a native-only crate) leaked into the
// browser build. `--self-test` checks that the check itself catches one.
import { readFileSync } from 'node:fs';

function envImports(bytes) {
  const module = new WebAssembly.Module(bytes);
  return WebAssembly.Module.imports(module).filter((i) => i.module === 'env');
}

if (process.argv[2] === '--self-test') {
  // A minimal module: one func type () -> (), imported as env.leaked.
  const leaky = new Uint8Array([
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // magic, version
    0x01, 0x04, 0x01, 0x60, 0x00, 0x00, // type section: () -> ()
    0x02, 0x0e, 0x01, 0x03, 0x65, 0x6e, 0x76, 0x06, 0x6c, 0x65, 0x61, 0x6b, 0x65, 0x64, 0x00, 0x00, // import env.leaked
  ]);
  const found = envImports(leaky);
  if (found.length !== 1 || found[0].name !== 'leaked') {
    console.error('check-wasm-imports self-test: an env import was not detected');
    process.exit(1);
  }
  console.log('check-wasm-imports self-test: an env import is detected');
  process.exit(0);
}

const file = process.argv[2];
if (!file) {
  console.error('usage: node check-wasm-imports.mjs FILE.wasm | --self-test');
  process.exit(2);
}
const found = envImports(readFileSync(file));
if (found.length > 0) {
  console.error(
    `${file} imports ${found.length} item(s) from module \`env\`: ` +
      found.map((i) => `env.${i.name} (${i.kind})`).join(', ') +
      '\nNon-web code leaked into the browser build (a native-only dependency or std I/O on wasm32-unknown-unknown).',
  );
  process.exit(1);
}
const all = WebAssembly.Module.imports(new WebAssembly.Module(readFileSync(file)));
console.log(`${file}: no imports from \`env\` (${all.length} imports, all from wasm-bindgen's JS glue)`);
