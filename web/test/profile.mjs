// Profiling aid (not a test, not a benchmark): one WebSocket echo run of
// COUNT messages of SIZE bytes in headless Chromium against ws-echo, under
// Chromium's CPU profiler (PROFILE=0: timing only); prints the functions
// with the most self time. Needs ws-echo's ports in the environment, as
// bench.mjs does (POSTSOCKET_WS_ECHO_PORT), and a built web/pkg.
//
// SIDE picks the run:
// - `postsocket` (default): the npm package, as bench.mjs drives it;
// - `raw`: the browser's WebSocket, as bench.mjs drives it;
// - `rawpromise`: the raw WebSocket consumed through a Promise per Message
//   (what a receive() API costs in JS alone);
// - `rawburn`: the raw WebSocket with BURN thousand iterations of arithmetic
//   per echo (it prints their cost per Message): how much throughput a
//   microsecond of per-Message work in the page costs;
// - `psbuffered`: the package, receiving only after every echo arrived; with
//   PHASE=send|wait|receive only that phase is profiled;
// - `rawpaced`: the raw WebSocket sending with postsocket's backpressure
//   (wait while bufferedAmount is over 1 MiB); DATA=1 also reads each
//   message's data, as bench.mjs's raw side does.
//
// Every run prints the page's main-thread time per Message (Chromium's
// TaskDuration and ScriptDuration). Options: INCLUSIVE=N prints the N
// functions with the most inclusive time; TREE=regex the call tree under
// matching functions (DEPTH, MIN_MS); CALLERS=regex the callers of matching
// functions, bottom-up, by their self time (DEPTH); TRACE=1 Chromium's trace events of the
// main thread by self time, native work included.
//
// The page prints when the sends finished and when every 2000th echo arrived.
import { openExample, port } from './harness.mjs';

const echo = port('POSTSOCKET_WS_ECHO_PORT');
const SIZE = Number(process.env.SIZE ?? 1024);
const COUNT = Number(process.env.COUNT ?? 20000);
const SIDE = process.env.SIDE ?? 'postsocket';
const PROFILE = process.env.PROFILE !== '0';

const { server, browser, page } = await openExample(echo);
try {
  const cdp = await page.context().newCDPSession(page);
  await cdp.send('Profiler.enable');
  await cdp.send('Profiler.setSamplingInterval', { interval: 100 });
  await page.evaluate(async () => {
    const m = await import('/pkg/index.js');
    await m.init();
    window.__m = m;
  });
  // PHASE=send|wait|receive (psbuffered only): profile that phase alone.
  const PHASE = process.env.PHASE;
  const phaseScript = {};
  await page.exposeFunction('phase', async (name, start) => {
    // Every phase's main-thread script time, per Message.
    const m = Object.fromEntries((await cdp.send('Performance.getMetrics')).metrics.map((x) => [x.name, x.value]));
    phaseScript[name] = start ? -m.ScriptDuration : ((phaseScript[name] + m.ScriptDuration) * 1e6) / COUNT;
    if (!start) console.log(`  phase ${name}: ${phaseScript[name].toFixed(1)} us of script per Message`);
    if (name !== PHASE) return;
    await cdp.send(start ? 'Profiler.start' : 'Profiler.stop').then((r) => { if (!start) globalThis.__profile = r.profile; });
  });
  await cdp.send('Performance.enable');
  const metrics = async () => Object.fromEntries((await cdp.send('Performance.getMetrics')).metrics.map((m) => [m.name, m.value]));
  // The page's main-thread CPU (Chromium's TaskDuration and ScriptDuration),
  // before and after the run: its cost per Message, without the profiler.
  const before = await metrics();
  if (PROFILE && !PHASE) await cdp.send('Profiler.start');
  // TRACE=1: Chromium's own trace of the run instead (what the main thread
  // spends its time on, natively too), summed by event name.
  const TRACE = process.env.TRACE === '1';
  const traceEvents = [];
  if (TRACE) {
    cdp.on('Tracing.dataCollected', (e) => traceEvents.push(...e.value));
    await cdp.send('Tracing.start', { categories: 'devtools.timeline,v8,blink,disabled-by-default-devtools.timeline', transferMode: 'ReportEvents' });
  }
  const ms = await page.evaluate(
    async ({ echo, SIZE, COUNT, SIDE, BURN, DATA }) => {
      const m = window.__m;
      const payload = new Uint8Array(SIZE).fill(7);
      // The raw modes' WebSocket to the echo server, open.
      const openRaw = async () => {
        const ws = new WebSocket(`ws://127.0.0.1:${echo}/`);
        ws.binaryType = 'arraybuffer';
        await new Promise((ok) => (ws.onopen = ok));
        return ws;
      };
      if (SIDE === 'rawpromise') {
        // The raw WebSocket consumed the way postsocket's receive() is: a
        // Promise per Message from a queue.
        const ws = await openRaw();
        const queue = [];
        let waiter = null;
        ws.onmessage = (e) => {
          const msg = { data: new Uint8Array(e.data), endOfMessage: true, partial: false, messageContext: { id: 1, final: false, earlyData: false } };
          if (waiter) { const w = waiter; waiter = null; w(msg); } else queue.push(msg);
        };
        const receive = () => (queue.length ? Promise.resolve(queue.shift()) : new Promise((ok) => (waiter = ok)));
        const send = (p) => { ws.send(p); return Promise.resolve({ sequence: 0 }); };
        const t0 = performance.now();
        const receiving = (async () => {
          for (let i = 0; i < COUNT; i++) await receive();
        })();
        for (let i = 0; i < COUNT; i++) await send(payload);
        console.log(`sends done after ${(performance.now() - t0).toFixed(0)} ms`);
        await receiving;
        return performance.now() - t0;
      }
      if (SIDE === 'rawburn') {
        // The raw WebSocket with BURN microseconds of busy work per echo: how
        // much per-Message CPU in the page costs in throughput.
        const ws = await openRaw();
        let received = 0;
        let sink = 0;
        const done = new Promise((ok) => (ws.onmessage = () => {
          // BURN thousand iterations of arithmetic (no clock reads).
          let x = received;
          for (let k = 0; k < BURN * 1000; k++) x = (x * 1103515245 + 12345) | 0;
          sink ^= x;
          if (++received === COUNT) ok();
        }));
        const t0 = performance.now();
        for (let i = 0; i < COUNT; i++) ws.send(payload);
        await done;
        const ms = performance.now() - t0;
        // The cost of the busy work alone, for scale.
        const b0 = performance.now();
        let x = 0;
        for (let k = 0; k < BURN * 1000 * 1000; k++) x = (x * 1103515245 + 12345) | 0;
        console.log(`busy work: ${((performance.now() - b0) / 1000 * 1000).toFixed(2)} us per Message (${x & 1})`);
        return ms;
      }
      if (SIDE === 'rawpaced') {
        // The raw WebSocket with postsocket's send backpressure: wait while
        // bufferedAmount is above HIGH (default 1 MiB), polling with the same
        // 1..16 ms backoff.
        const HIGH = Number(window.__high ?? (1 << 20));
        const ws = await openRaw();
        let received = 0;
        // DATA=1: read each message's data, as bench.mjs's raw side does
        // (Chromium makes the ArrayBuffer's JS object only when it is read).
        let bytes = 0;
        const done = new Promise((ok) => (ws.onmessage = (e) => { if (DATA) bytes += e.data.byteLength; if (++received === COUNT) ok(); }));
        const t0 = performance.now();
        let waits = 0;
        for (let i = 0; i < COUNT; i++) {
          let pause = 1;
          while (ws.bufferedAmount > HIGH) {
            waits++;
            await new Promise((ok) => setTimeout(ok, pause));
            pause = Math.min(pause * 2, 16);
          }
          ws.send(payload);
        }
        console.log(`sends done after ${(performance.now() - t0).toFixed(0)} ms, ${waits} waits`);
        await done;
        return performance.now() - t0;
      }
      if (SIDE === 'raw') {
        const ws = await openRaw();
        let received = 0;
        const marks = [];
        const done = new Promise((ok) => (ws.onmessage = () => { if (++received % 2000 === 0) marks.push((performance.now() - t0).toFixed(0)); if (received === COUNT) ok(); }));
        const t0 = performance.now();
        for (let i = 0; i < COUNT; i++) ws.send(payload);
        console.log(`sends done after ${(performance.now() - t0).toFixed(0)} ms`);
        await done;
        console.log(`arrivals: ${marks.join(' ')}`);
        return performance.now() - t0;
      }
      if (SIDE === 'psbuffered') {
        // Per-Message cost alone: let every echo arrive first, then receive them all.
        const pre = new m.Preconnection({ remote: { ip: '127.0.0.1', port: echo }, security: { disabled: true } });
        const conn = await pre.initiate({ timeout: 10000 });
        await window.phase('send', true);
        const t0 = performance.now();
        for (let i = 0; i < COUNT; i++) await conn.send(payload);
        const sent = performance.now() - t0;
        await window.phase('send', false);
        await window.phase('wait', true);
        await new Promise((ok) => setTimeout(ok, 6000));
        await window.phase('wait', false);
        await window.phase('receive', true);
        const t1 = performance.now();
        for (let i = 0; i < COUNT; i++) await conn.receive();
        const got = performance.now() - t1;
        await window.phase('receive', false);
        console.log(`sends ${sent.toFixed(0)} ms; receiving ${COUNT} buffered Messages ${got.toFixed(0)} ms`);
        await conn.close();
        return sent + got;
      }
      const pre = new m.Preconnection({ remote: { ip: '127.0.0.1', port: echo }, security: { disabled: true } });
      const conn = await pre.initiate({ timeout: 10000 });
      const t0 = performance.now();
      const marks = [];
      const receiving = (async () => {
        for (let i = 1; i <= COUNT; i++) { await conn.receive(); if (i % 2000 === 0) marks.push((performance.now() - t0).toFixed(0)); }
      })();
      for (let i = 0; i < COUNT; i++) await conn.send(payload);
      const sent = performance.now() - t0;
      await receiving;
      const ms = performance.now() - t0;
      await conn.close();
      console.log(`sends done after ${sent.toFixed(0)} ms over ${conn.stack}`);
      console.log(`arrivals: ${marks.join(' ')}`);
      return ms;
    },
    { echo, SIZE, COUNT, SIDE, BURN: Number(process.env.BURN ?? 0), DATA: process.env.DATA === '1' },
  );
  const after = await metrics();
  if (TRACE) {
    const done = new Promise((ok) => cdp.once('Tracing.tracingComplete', ok));
    await cdp.send('Tracing.end');
    await done;
    // Self time of complete events on the busiest thread (the page's main
    // thread). JS run from microtasks (awaits, Promise reactions) has no event
    // of its own: it counts as RunTask's self time.
    const byThread = new Map();
    for (const e of traceEvents) if (e.ph === 'X' && e.dur) byThread.set(e.tid, (byThread.get(e.tid) ?? 0) + 1);
    const main = [...byThread].sort((a, b) => b[1] - a[1])[0][0];
    const evs = traceEvents.filter((e) => e.tid === main && e.ph === 'X' && e.dur).sort((a, b) => a.ts - b.ts || b.dur - a.dur);
    const self = new Map();
    const stack = [];
    for (const e of evs) {
      while (stack.length && stack[stack.length - 1].end <= e.ts) stack.pop();
      if (stack.length) stack[stack.length - 1].self -= e.dur;
      const item = { name: e.name, end: e.ts + e.dur, self: e.dur };
      stack.push(item);
      e.__item = item;
    }
    for (const e of evs) self.set(e.name, (self.get(e.name) ?? 0) + e.__item.self);
    console.log('main-thread trace, self time per Message (us):');
    for (const [name, us] of [...self].sort((a, b) => b[1] - a[1]).slice(0, 25)) console.log(`${(us / COUNT).toFixed(2).padStart(8)}  ${name}`);
  }
  const per = (k) => (((after[k] - before[k]) * 1e6) / COUNT).toFixed(1);
  console.log(`main thread per Message: ${per('TaskDuration')} us busy, ${per('ScriptDuration')} us in script`);
  if (!PROFILE) {
    console.log(`${SIDE}: ${COUNT} x ${SIZE} B in ${ms.toFixed(0)} ms`);
    process.exit(0);
  }
  const profile = PHASE ? globalThis.__profile : (await cdp.send('Profiler.stop')).profile;
  const self = new Map();
  const dt = profile.timeDeltas;
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const total = dt.reduce((a, b) => a + b, 0);
  profile.samples.forEach((id, i) => {
    const n = byId.get(id);
    const name = `${n.callFrame.functionName || '(anonymous)'} ${n.callFrame.url.split('/').pop()}:${n.callFrame.lineNumber}`;
    self.set(name, (self.get(name) ?? 0) + (dt[i] ?? 0));
  });
  // Inclusive time: each sample counts once for every distinct function on its stack.
  const parent = new Map();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const incl = new Map();
  profile.samples.forEach((id, i) => {
    const seen = new Set();
    for (let at = id; at !== undefined; at = parent.get(at)) {
      const n = byId.get(at);
      const name = `${n.callFrame.functionName || '(anonymous)'} ${n.callFrame.url.split('/').pop()}:${n.callFrame.lineNumber}`;
      if (!seen.has(name)) { seen.add(name); incl.set(name, (incl.get(name) ?? 0) + (dt[i] ?? 0)); }
    }
  });
  // TREE=regex: the call tree under the first-matching frames, by inclusive time.
  if (process.env.TREE) {
    const re = new RegExp(process.env.TREE);
    const nameOf = (n) => `${n.callFrame.functionName || '(anonymous)'} ${n.callFrame.url.split('/').pop()}:${n.callFrame.lineNumber}`;
    const selfTime = new Map();
    profile.samples.forEach((id, i) => selfTime.set(id, (selfTime.get(id) ?? 0) + (dt[i] ?? 0)));
    const inclOf = (n) => (selfTime.get(n.id) ?? 0) + (n.children ?? []).reduce((a, c) => a + inclOf(byId.get(c)), 0);
    // Merge nodes by name path below the matched roots.
    const merged = new Map();
    const walk = (n, path, depth) => {
      const key = `${path}/${nameOf(n)}`;
      merged.set(key, (merged.get(key) ?? 0) + inclOf(n));
      if (depth < Number(process.env.DEPTH ?? 6)) for (const c of n.children ?? []) walk(byId.get(c), key, depth + 1);
    };
    const roots = (n) => re.test(nameOf(n)) ? walk(n, '', 0) : (n.children ?? []).forEach((c) => roots(byId.get(c)));
    roots(profile.nodes[0]);
    for (const [k, us] of [...merged].sort((a, b) => (a[0] < b[0] ? -1 : 1))) {
      if (us / 1000 < Number(process.env.MIN_MS ?? 5)) continue;
      const parts = k.split('/').slice(1);
      console.log(`${(us / 1000).toFixed(1).padStart(8)} ms ${'  '.repeat(parts.length - 1)}${parts[parts.length - 1]}`);
    }
  }
  // CALLERS=regex: for frames matching it, their self time by caller chain (bottom-up, DEPTH frames).
  if (process.env.CALLERS) {
    const re = new RegExp(process.env.CALLERS);
    const nameOf = (n) => `${n.callFrame.functionName || '(anonymous)'} ${n.callFrame.url.split('/').pop()}:${n.callFrame.lineNumber}`;
    const chains = new Map();
    profile.samples.forEach((id, i) => {
      const n = byId.get(id);
      if (!re.test(nameOf(n))) return;
      const chain = [];
      for (let at = id; at !== undefined && chain.length <= Number(process.env.DEPTH ?? 6); at = parent.get(at)) chain.push(nameOf(byId.get(at)));
      const key = chain.join('\n      <- ');
      chains.set(key, (chains.get(key) ?? 0) + (dt[i] ?? 0));
    });
    for (const [k, us] of [...chains].sort((a, b) => b[1] - a[1]).slice(0, 8)) console.log(`${(us / 1000).toFixed(1).padStart(8)} ms ${k}`);
  }
  if (process.env.INCLUSIVE) {
    console.log('inclusive:');
    for (const [name, us] of [...incl].sort((a, b) => b[1] - a[1]).slice(0, Number(process.env.INCLUSIVE))) {
      console.log(`${(us / 1000).toFixed(1).padStart(8)} ms  ${(100 * us / total).toFixed(1).padStart(5)}%  ${name}`);
    }
    console.log('self:');
  }
  console.log(`${SIDE}: ${COUNT} x ${SIZE} B in ${ms.toFixed(0)} ms; profile ${(total / 1000).toFixed(0)} ms`);
  for (const [name, us] of [...self].sort((a, b) => b[1] - a[1]).slice(0, Number(process.env.TOP ?? 30))) {
    console.log(`${(us / 1000).toFixed(1).padStart(8)} ms  ${(100 * us / total).toFixed(1).padStart(5)}%  ${name}`);
  }
} finally {
  await browser.close();
  await server.close();
}
