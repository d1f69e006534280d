// Benchmark (not a test): WebSocket message throughput through the postsocket
// npm package vs the browser's raw WebSocket, in the same page, against the
// same native echo server (ws-echo). Each run sends COUNT messages of SIZE
// bytes and waits for all echoes. Runs come in RUNS pairs (raw and postsocket
// next to each other, which goes first alternating); the printed ratio is the
// median of the pairs' ratios, with the lowest and highest beside it. Run by
// scripts/bench-web.sh.
import { openExample, port } from './harness.mjs';

const echo = port('POSTSOCKET_WS_ECHO_PORT');
const RUNS = Number(process.env.RUNS ?? 21);
const WORKLOADS = [
  { size: 1024, count: 20000 },
  { size: 64 * 1024, count: 1000 },
];

const { server, browser, page } = await openExample(echo);
try {
  const results = await page.evaluate(
    async ({ echo, RUNS, WORKLOADS }) => {
      const m = await import('/pkg/index.js');
      await m.init();
      const timeout = (ms, what) => new Promise((_, no) => setTimeout(() => no(new Error(`${what}: over ${ms} ms`)), ms));

      async function raw(size, count) {
        const ws = new WebSocket(`ws://127.0.0.1:${echo}/`);
        ws.binaryType = 'arraybuffer';
        await new Promise((ok, no) => {
          ws.onopen = ok;
          ws.onerror = () => no(new Error('raw WebSocket did not open'));
        });
        const payload = new Uint8Array(size).fill(7);
        let received = 0;
        let bytes = 0;
        const done = new Promise((ok) => {
          ws.onmessage = (e) => {
            bytes += e.data.byteLength;
            if (++received === count) ok();
          };
        });
        const t0 = performance.now();
        for (let i = 0; i < count; i++) ws.send(payload);
        await Promise.race([done, timeout(60000, 'raw run')]);
        const ms = performance.now() - t0;
        ws.close();
        if (bytes !== size * count) throw new Error(`raw: ${bytes} bytes back, expected ${size * count}`);
        return ms;
      }

      async function postsocket(size, count) {
        const pre = new m.Preconnection({ remote: { ip: '127.0.0.1', port: echo }, security: { disabled: true } });
        const conn = await pre.initiate({ timeout: 10000 });
        const payload = new Uint8Array(size).fill(7);
        let bytes = 0;
        const t0 = performance.now();
        const receiving = (async () => {
          for (let i = 0; i < count; i++) bytes += (await conn.receive()).data.length;
        })();
        for (let i = 0; i < count; i++) await conn.send(payload);
        await Promise.race([receiving, timeout(60000, 'postsocket run')]);
        const ms = performance.now() - t0;
        await conn.close();
        if (bytes !== size * count) throw new Error(`postsocket: ${bytes} bytes back, expected ${size * count}`);
        return ms;
      }

      const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
      const out = [];
      for (const { size, count } of WORKLOADS) {
        // Warm-up, not counted: a quarter of a run each, so the wasm code is
        // tiered up (V8 compiles hot wasm functions again, optimised, while
        // they run) and the comparison is of the steady state.
        await raw(size, Math.ceil(count / 4));
        await postsocket(size, Math.ceil(count / 4));
        const r = [];
        const p = [];
        for (let i = 0; i < RUNS; i++) {
          // Pairs, each run next to its partner; which goes first alternates.
          if (i % 2 === 0) {
            r.push(await raw(size, count));
            p.push(await postsocket(size, count));
          } else {
            p.push(await postsocket(size, count));
            r.push(await raw(size, count));
          }
        }
        const ratios = r.map((x, i) => x / p[i]);
        out.push({ size, count, raw: median(r), postsocket: median(p), ratio: median(ratios), ratios, rawAll: r, postsocketAll: p });
      }
      return out;
    },
    { echo, RUNS, WORKLOADS },
  );
  console.log(`WebSocket echo throughput, median of ${RUNS} runs (send all, receive all echoes; higher is better)`);
  for (const r of results) {
    const mbps = (ms) => ((r.size * r.count) / 1e6 / (ms / 1000)).toFixed(1);
    const kmsg = (ms) => (r.count / (ms / 1000) / 1000).toFixed(1);
    // The median of the paired ratios: steadier than a ratio of medians on a
    // machine whose speed drifts between runs.
    const ratio = r.ratio;
    const [lo, hi, coverage] = medianInterval(r.ratios, 0.9);
    console.log(
      `  ${String(r.count).padStart(5)} x ${String(r.size).padStart(6)} B:` +
        `  raw WebSocket ${mbps(r.raw)} MB/s (${kmsg(r.raw)} k msg/s)` +
        `  postsocket ${mbps(r.postsocket)} MB/s (${kmsg(r.postsocket)} k msg/s)` +
        `  ratio ${ratio.toFixed(3)}x ${ratio >= 0.9 ? '(goal >= 0.9x met)' : '(goal >= 0.9x NOT met)'}` +
        ` (pairs ${Math.min(...r.ratios).toFixed(2)}-${Math.max(...r.ratios).toFixed(2)};` +
        ` ${Math.floor(coverage * 100)}% confidence interval of the median ${lo.toFixed(3)}-${hi.toFixed(3)}` +
        `${lo >= 0.9 ? ', all above the goal' : ''})`,
    );
    console.log(
      `        runs (ms): raw ${r.rawAll.map((x) => x.toFixed(0)).join(' ')}; postsocket ${r.postsocketAll.map((x) => x.toFixed(0)).join(' ')}`,
    );
  }
} finally {
  await browser.close();
  await server.close();
}

/**
 * A distribution-free confidence interval of the median of `xs` (from the
 * binomial distribution of how many fall below it): the narrowest pair of
 * order statistics x(k), x(n+1-k) that covers it with at least `level`
 * probability (the whole range when there are too few). Returns
 * `[low, high, coverage]`.
 */
function medianInterval(xs, level) {
  const s = [...xs].sort((a, b) => a - b);
  const n = s.length;
  // P(X <= j) for X ~ Binomial(n, 1/2).
  const below = (j) => {
    let c = 1;
    let sum = 0;
    for (let i = 0; i <= j; i++) {
      sum += c;
      c = (c * (n - i)) / (i + 1);
    }
    return sum / 2 ** n;
  };
  let k = 1;
  while (k + 1 <= n / 2 && 1 - 2 * below(k) >= level) k++;
  return [s[k - 1], s[n - k], 1 - 2 * below(k - 1)];
}
