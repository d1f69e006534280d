// Profiling aid (not a test, not a benchmark): an A/B of two builds of the npm
// package in one page, for changes too small for bench.mjs to see (its pairs scatter
// by about 10% on a 2-core machine). Build the two into web/_pkgA and web/_pkgB
// (`bash scripts/build-npm.sh $PWD/web/_pkgA`; both ignored by git), start ws-echo,
// and run `env $(cat ws-echo.out) node web/test/ab.mjs`.
//
// What it times, per build: delivering one 1 KiB message to a waiting receive(),
// by calling the handler postsocket set on its WebSocket with a plain event (no
// network, no browser cost for e.data), and one send(). `hot`: message after
// message. `cold`: with the CPU caches evicted before each message, as the
// browser's own work between two messages does in a real run; there postsocket's
// per-Message cost is several times its hot cost, so code and data touched per
// Message matter more than instructions. Batches alternate A and B; it prints the
// median of the later half of the batches (after V8 tiered the code up) and the
// median of the paired differences, B minus A, in microseconds (BATCHES, default 30).
import { openExample, port } from './harness.mjs';
const echo = port('POSTSOCKET_WS_ECHO_PORT');
const BATCHES = Number(process.env.BATCHES ?? 30);
// Cross-origin isolated: performance.now() at 5 us, not 100 us.
const { server, browser, page } = await openExample(echo, { isolated: true });
try {
  const r = await page.evaluate(async ({ echo, BATCHES }) => {
    if (!crossOriginIsolated) throw new Error('the page is not cross-origin isolated');
    let handler = null;
    const desc = Object.getOwnPropertyDescriptor(WebSocket.prototype, 'onmessage');
    Object.defineProperty(WebSocket.prototype, 'onmessage', { set(f) { handler = f; desc.set.call(this, f); }, get() { return desc.get.call(this); } });
    async function open(path) {
      const m = await import(path); await m.init();
      const pre = new m.Preconnection({ remote: { ip: '127.0.0.1', port: echo }, security: { disabled: true } });
      const conn = await pre.initiate({ timeout: 10000 });
      return { conn, h: handler };
    }
    const A = await open('/_pkgA/index.js');
    const B = await open('/_pkgB/index.js');
    const ab = new Uint8Array(1024).fill(7).buffer;
    const junk = new Uint8Array(6 << 20);
    let sink = 0;
    const thrash = () => { for (let i = 0; i < junk.length; i += 64) sink += junk[i]++; };
    const N = 1500;
    async function run({ conn, h }, cold) {
      let t = 0, bytes = 0;
      for (let i = 0; i < N; i++) {
        if (cold) thrash();
        const t1 = performance.now();
        const p = conn.receive(); h({ data: ab }); bytes += (await p).data.length;
        t += performance.now() - t1;
      }
      if (bytes !== N * 1024) throw new Error('bytes');
      return t * 1000 / N;
    }
    const out = {};
    for (const cold of [false, true]) {
      const a = [], b = [];
      for (let k = 0; k < BATCHES; k++) {
        if (k % 2) { a.push(await run(A, cold)); b.push(await run(B, cold)); } else { b.push(await run(B, cold)); a.push(await run(A, cold)); }
      }
      const med = (xs) => [...xs].sort((x, y) => x - y)[xs.length >> 1];
      const late = (xs) => xs.slice(xs.length >> 1);
      out[cold ? 'cold' : 'hot'] = { A: med(late(a)).toFixed(2), B: med(late(b)).toFixed(2), diffBminusA: med(late(a).map((x, i) => late(b)[i] - x)).toFixed(2) };
    }
    const payload = new Uint8Array(1024).fill(7);
    async function send({ conn }) {
      let t = 0;
      for (let i = 0; i < 300; i++) {
        thrash();
        const t1 = performance.now();
        await conn.send(payload);
        t += performance.now() - t1;
      }
      return t * 1000 / 300;
    }
    {
      const a = [], b = [];
      for (let k = 0; k < 16; k++) {
        if (k % 2) { a.push(await send(A)); b.push(await send(B)); } else { b.push(await send(B)); a.push(await send(A)); }
      }
      const med = (xs) => [...xs].sort((x, y) => x - y)[xs.length >> 1];
      const late = (xs) => xs.slice(xs.length >> 1);
      out.sendCold = { A: med(late(a)).toFixed(2), B: med(late(b)).toFixed(2), diffBminusA: med(late(a).map((x, i) => late(b)[i] - x)).toFixed(2) };
    }
    return out;
  }, { echo, BATCHES });
  console.log(JSON.stringify(r));
} finally { await browser.close(); await server.close(); }
