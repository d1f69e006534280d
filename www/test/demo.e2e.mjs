// End-to-end test of the www demo: starts demo-server, drives the page in
// headless Chromium (playwright-core, Debian's /usr/bin/chromium, no browser
// download), or with BROWSER=firefox in Firefox ESR (puppeteer-core over
// WebDriver BiDi, through web/test/harness.mjs), and checks what a user would
// see:
//   0. The defaults as a newcomer clicks them: WebTransport wins, and Send
//      echoes each Message as itself.
//   1. WebTransport blackholed on the server → WebSocket wins about one
//      attempt delay later (adaptive: from WebTransport's handshake time in
//      step 0), and the timeline shows WebTransport cancelled; a message
//      echoes with its round-trip time. Connect again: the page's
//      TransportContext holds WebTransport back (with the reason shown) and
//      WebSocket starts at once; Forget clears it. WebTransport refused → its
//      attempt fails and WebSocket starts at once. Then a WebRTC Rendezvous
//      with the server's native peer echoes over a data channel.
//   2. A native race (QUIC blackholed vs TLS) run by the server is drawn in
//      the same view: TLS won, QUIC cancelled. Run with IPv6 blackholed six
//      times, the server's TransportContext learns that IPv6 never answers
//      on its network, and the sixth race starts IPv4 first, saying why.
//   3. A trace exported as JSON imports back into the same picture; the
//      layout fits a phone-width screen.
//   4. The API refuses a cross-site POST and a foreign Host (CSRF, DNS
//      rebinding).
// Each step saves a screenshot in $SHOTS (default www/test/screenshots).
//
// Usage: node www/test/demo.e2e.mjs  (env: DEMO_SERVER=path/to/demo-server,
// PKG=path/to/web/pkg, CHROMIUM=/usr/bin/chromium, BROWSER=chromium|firefox,
// FIREFOX=/usr/bin/firefox-esr, SHOTS=dir). Firefox gathers no ICE candidate
// in a loopback-only network namespace: give it one with a default route.
import { spawn } from 'node:child_process';
import { request as httpRequest } from 'node:http';
import { createRequire } from 'node:module';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '../..');
// playwright-core is installed once for the browser tests, in web/test.
const require = createRequire(join(root, 'web/test/package.json'));
const { chromium } = require('playwright-core');
const BROWSER = process.env.BROWSER ?? 'chromium';

const serverBin = process.env.DEMO_SERVER ?? join(root, 'target/debug/demo-server');
const pkg = process.env.PKG ?? join(root, 'web/pkg');
const shots = join(process.env.SHOTS ?? join(here, 'screenshots'), BROWSER);
mkdirSync(shots, { recursive: true });

const deadline = (ms, what) => new Promise((_, reject) => setTimeout(() => reject(new Error(`timed out: ${what}`)), ms));

function startServer() {
  const child = spawn(serverBin, ['--port', '0', '--pkg', pkg, '--www', join(root, 'www')], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stderr.on('data', (d) => { err += d; });
  const url = new Promise((res, rej) => {
    child.stdout.on('data', (d) => {
      out += d;
      const m = out.match(/open (http:\/\/\S+)/);
      if (m) res(m[1]);
    });
    child.on('exit', (code) => rej(new Error(`demo-server exited with ${code}: ${err}`)));
  });
  return { child, url: Promise.race([url, deadline(15000, 'demo-server URL')]), stderr: () => err };
}

function check(cond, message) {
  if (!cond) throw new Error(message);
  console.log(`ok - ${message}`);
}

/** Type `text`, press Send, and check that the newest row shows it echoed. */
async function sendAndCheck(page, text) {
  await page.fill('#message', text);
  await page.click('#send');
  // The page puts the new row first and marks it with its round-trip time
  // once the echo (or an error) is in.
  await page.waitForFunction(() => {
    const row = document.querySelector('#messages tbody tr:first-child');
    return row && (row.dataset.rtt || row.cells[1].textContent !== '…');
  }, null, { timeout: 10000 });
  const echo = await page.textContent('#messages tbody tr:first-child td:nth-child(2)');
  const winner = await page.getAttribute('body', 'data-winner');
  const shown = text.length > 40 ? `${text.length} bytes` : text;
  check(echo === text, `over ${winner}, "${shown}" echoed as itself${echo === text ? '' : `, not "${echo.slice(0, 80)}"`}`);
}

const server = startServer();
const profile = mkdtempSync(join(tmpdir(), 'postsocket-demo-'));
let browser;
let page;
let failed = false;
try {
  const url = await server.url;
  console.log(`demo-server at ${url}`);
  if (BROWSER === 'firefox') {
    const { launch } = await import(join(root, 'web/test/harness.mjs'));
    browser = await launch();
    page = browser.page;
    await page.setViewportSize({ width: 1280, height: 1000 });
  } else {
    browser = await chromium.launch({
      executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
        '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage',
        // WebRTC on loopback (without these Chromium gathers no loopback candidate and
        // asks for media permission); the server's peer offers only 127.0.0.1.
        '--allow-loopback-in-peer-connection', '--use-fake-ui-for-media-stream'],
    });
    page = await browser.newPage({ viewport: { width: 1280, height: 1000 } });
  }
  console.log(`in ${BROWSER}`);
  const logs = [];
  page.on('console', (m) => logs.push(`${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => logs.push(`pageerror: ${e.message}`));
  await page.goto(url);
  await page.waitForSelector('body[data-state=idle]', { timeout: 15000 });
  check(true, 'the page loaded the npm package and the server config');

  // 0. The default path, exactly as a newcomer clicks it: nothing changed,
  // Connect, then Send. WebTransport wins, and each Message, short or long,
  // comes back as itself (a WebTransport stream carries Messages framed).
  await page.click('#connect');
  await page.waitForSelector('body[data-state=ready], body[data-state=failed]', { timeout: 20000 });
  check(await page.getAttribute('body', 'data-winner') === 'wt', `defaults: ${await page.textContent('#status')}`);
  await sendAndCheck(page, 'hello with the defaults');
  await sendAndCheck(page, 'x'.repeat(5000));
  await sendAndCheck(page, 'and a third');
  await page.screenshot({ path: join(shots, 'defaults.png'), fullPage: true });

  // 1. WebTransport blackholed: WebSocket wins one attempt delay later.
  await page.check('[name=stack][value=wt]');
  await page.uncheck('[name=stack][value=wss]');
  await page.check('[name=stack][value=ws]');
  await page.selectOption('#security', 'opportunistic');
  await page.selectOption('.fault[data-stack=wt] [name=mode]', 'blackhole');
  await page.selectOption('.fault[data-stack=ws] [name=mode]', 'none');
  await page.click('#connect');
  await page.waitForSelector('body[data-state=ready], body[data-state=failed]', { timeout: 20000 });
  const status = await page.textContent('#status');
  check(await page.getAttribute('body', 'data-state') === 'ready', `connected: ${status}`);
  check(await page.getAttribute('body', 'data-winner') === 'ws', 'WebSocket won');
  const wtRow = await page.getAttribute('#timeline g.row[data-stack=wt]', 'data-outcome');
  check(wtRow === 'cancelled', `the timeline shows WebTransport ${wtRow} (expected cancelled)`);
  const wsRow = await page.getAttribute('#timeline g.row[data-stack=ws]', 'data-outcome');
  check(wsRow === 'won', `the timeline shows WebSocket ${wsRow}`);
  const trace = await page.evaluate(() => window.postsocketDemo.shown().events);
  const startOf = (stack) => {
    const leaf = trace.find((e) => e.event === 'candidate' && e.branch === 'endpoint' && e.stack === stack);
    return trace.find((e) => e.event === 'attempt_started' && e.id === leaf.id).t_ms;
  };
  const gap = startOf('ws') - startOf('wt');
  // Adaptive by default: the delay after WebTransport's start follows its
  // handshake time from step 0, and the trace says so.
  const wtLeaf = trace.find((e) => e.event === 'candidate' && e.branch === 'endpoint' && e.stack === 'wt').id;
  const announced = trace.find((e) => e.event === 'attempt_delay' && e.id === wtLeaf);
  const delay = Number(announced?.reason?.match(/next attempt after ([\d.]+) ms/)?.[1] ?? 250);
  // (The trace says where the delay came from; its value follows how long
  // step 0's handshake took, which a loaded machine stretches past 250 ms.)
  check(announced !== undefined && /smoothed handshake time/.test(announced.reason) && delay >= 10 && delay <= 2000,
    `the attempt delay came from the handshake time: ${announced?.reason}`);
  check(gap >= delay - 1 && gap < delay + 500, `WebSocket started ${gap.toFixed(1)} ms after WebTransport (attempt delay ${delay} ms)`);
  await sendAndCheck(page, 'hello from the e2e test');
  await sendAndCheck(page, 'y'.repeat(5000));
  // Connect again closed the step-0 Connection cleanly (close(), not abort()).
  await page.waitForFunction(() => window.postsocketDemo.previousEndings().length >= 1, null, { timeout: 10000 })
    .catch(() => {});
  const endings = await page.evaluate(() => window.postsocketDemo.previousEndings());
  check(endings[0] === 'closed', `the Connection the page moved on from ended cleanly: ${JSON.stringify(endings)}`);
  await page.screenshot({ path: join(shots, 'browser-race.png'), fullPage: true });

  // 1'. The same again: the page remembers. WebTransport is held back (the
  // reason is in the history list), WebSocket starts at once and wins.
  await page.click('#connect');
  await page.waitForSelector('body[data-state=ready], body[data-state=failed]', { timeout: 20000 });
  check(await page.getAttribute('body', 'data-winner') === 'ws', `again: ${await page.textContent('#status')}`);
  check(await page.getAttribute('#timeline g.row[data-stack=wt]', 'data-outcome') === 'held', 'the timeline shows WebTransport held back');
  const heldWhy = await page.textContent('#history li[data-event=held_back]');
  check(heldWhy.includes('held back for') && heldWhy.includes('lost 1 race'), `the history says why: ${heldWhy}`);
  const again = await page.evaluate(() => window.postsocketDemo.shown().events);
  const firstStart = again.find((e) => e.event === 'attempt_started');
  check(again.find((e) => e.id === firstStart.id && e.event === 'candidate').stack === 'ws' && firstStart.t_ms < 50,
    `WebSocket started first, at ${firstStart.t_ms.toFixed(1)} ms: no attempt delay paid`);
  check((await page.textContent('#memory')).includes('held back: wt to 127.0.0.1'), `the memory line: ${await page.textContent('#memory')}`);
  await sendAndCheck(page, 'remembered');
  await page.screenshot({ path: join(shots, 'learning.png'), fullPage: true });
  await page.click('#forget');
  check((await page.textContent('#memory')).startsWith('Forgotten. Remembered: 0'), `Forget: ${await page.textContent('#memory')}`);

  // 1a. WebTransport refused: its attempt fails fast and WebSocket starts at
  // once, without waiting for the attempt delay.
  await page.selectOption('.fault[data-stack=wt] [name=mode]', 'refuse');
  await page.click('#connect');
  await page.waitForFunction(() => document.querySelector('#timeline g.row[data-stack=wt]')
    && ['ready', 'failed'].includes(document.body.dataset.state), null, { timeout: 20000 });
  check(await page.getAttribute('body', 'data-winner') === 'ws', `WT refused: ${await page.textContent('#status')}`);
  const refused = await page.evaluate(() => window.postsocketDemo.shown().events);
  const started = (events, stack) => {
    const leaf = events.find((e) => e.event === 'candidate' && e.branch === 'endpoint' && e.stack === stack);
    return events.find((e) => e.event === 'attempt_started' && e.id === leaf.id).t_ms;
  };
  check(await page.getAttribute('#timeline g.row[data-stack=wt]', 'data-outcome') === 'failed', 'the timeline shows WebTransport failed');
  const fast = started(refused, 'ws') - started(refused, 'wt');
  check(fast < 200, `WebSocket started ${fast.toFixed(1)} ms after the refused WebTransport (no attempt delay wait)`);
  await page.selectOption('.fault[data-stack=wt] [name=mode]', 'none');

  // 1b. Rendezvous over WebRTC with the server's native peer.
  await page.click('#rendezvous');
  await page.waitForFunction(() => document.querySelector('#status').textContent.startsWith('Ready: webrtc')
    || document.body.dataset.state === 'failed', null, { timeout: 30000 });
  check(await page.getAttribute('body', 'data-winner') === 'webrtc', `WebRTC rendezvous: ${await page.textContent('#status')}`);
  await sendAndCheck(page, 'over a data channel');

  // 2. A native race drawn in the same view.
  await page.selectOption('#scenario', 'quic-blackholed');
  await page.click('#run-native');
  await page.waitForFunction(() => document.querySelector('#race-source').textContent.includes('native'), null, { timeout: 20000 });
  await page.waitForSelector('body[data-state=ready], body[data-state=failed]', { timeout: 20000 });
  check(await page.getAttribute('body', 'data-winner') === 'tls', 'native race: TLS won');
  check(await page.getAttribute('#timeline g.row[data-stack=quic]', 'data-outcome') === 'cancelled', 'native race: QUIC cancelled');
  await page.screenshot({ path: join(shots, 'native-race.png'), fullPage: true });

  // 2a. The native race view learns too: the server's TransportContext
  // counts IPv6 attempts that stay silent on its network. After 5 runs with
  // IPv6 blackholed (each on fresh ports), the 6th starts IPv4 first and the
  // trace says why.
  const hasV6 = await page.evaluate(() => [...document.querySelectorAll('#scenario option')].some((o) => o.value === 'ipv6-blackholed'));
  if (hasV6) {
    await page.selectOption('#scenario', 'ipv6-blackholed');
    let learned = null;
    for (let run = 1; run <= 6; run += 1) {
      await page.click('#run-native');
      await page.waitForFunction((n) => document.querySelector('#race-source').textContent.includes('ipv6-blackholed')
        && document.body.dataset.state !== 'racing', run, { timeout: 20000 });
      const events = await page.evaluate(() => window.postsocketDemo.shown().events);
      const first = events.find((e) => e.event === 'attempt_started');
      const firstAddr = events.find((e) => e.event === 'candidate' && e.id === first.id).address;
      const why = events.find((e) => e.event === 'reordered' && /IPv6 seems blackholed/.test(e.reason ?? ''));
      if (run < 6) check(firstAddr.startsWith('[::1]'), `native run ${run}: IPv6 first (${firstAddr})`);
      else learned = { firstAddr, why };
    }
    check(learned.firstAddr.startsWith('127.0.0.1') && learned.why,
      `native run 6: IPv4 first (${learned.firstAddr}), because ${learned.why?.reason}`);
    await page.screenshot({ path: join(shots, 'native-learned.png'), fullPage: true });
    // Back to the QUIC race for the export below.
    await page.selectOption('#scenario', 'quic-blackholed');
    await page.click('#run-native');
    await page.waitForFunction(() => document.querySelector('#race-source').textContent.includes('quic-blackholed')
      && document.body.dataset.state !== 'racing', null, { timeout: 20000 });
    check(await page.getAttribute('body', 'data-winner') === 'tls', 'native race again: TLS won');
  } else {
    console.log('# no IPv6 loopback here: the native learning step is skipped');
  }

  // 3. Export, import back, phone width.
  const exported = join(profile, 'trace.json');
  if (BROWSER === 'firefox') {
    // No download events over WebDriver BiDi here: take the file the page
    // offers from the link it clicks.
    await page.evaluate(() => {
      HTMLAnchorElement.prototype.click = function keep() {
        window.exportedTrace = fetch(this.href).then((r) => r.text());
      };
    });
    await page.click('#export');
    writeFileSync(exported, await page.evaluate(() => window.exportedTrace));
  } else {
    const [download] = await Promise.all([page.waitForEvent('download'), page.click('#export')]);
    await download.saveAs(exported);
  }
  const saved = JSON.parse(readFileSync(exported, 'utf8'));
  check(saved.events.length > 5, `exported ${saved.events.length} events`);
  await page.setInputFiles('#import', exported);
  await page.waitForFunction(() => document.querySelector('#race-source').textContent.includes('imported'), null, { timeout: 5000 });
  check(await page.getAttribute('body', 'data-winner') === 'tls', 'the imported trace shows TLS winning again');
  await page.setInputFiles('#import', { name: 'bad.json', mimeType: 'application/json', buffer: Buffer.from('{"events":[{"t_ms":"x"}]}') });
  await page.waitForSelector('body[data-state=failed]', { timeout: 5000 });
  check((await page.textContent('#status')).includes('event 1 lacks'), 'a malformed trace is refused with a reason');
  await page.setViewportSize({ width: 390, height: 844 });
  await page.setInputFiles('#import', exported);
  await page.waitForSelector('body[data-state=ready]', { timeout: 5000 });
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  check(overflow <= 0, `fits a phone-width screen (overflow ${overflow}px)`);
  await page.screenshot({ path: join(shots, 'phone.png'), fullPage: true });
  // 4. Only the demo's own page reaches its API: a cross-site POST (what
  // another site could make the visitor's browser send) and a request for a
  // foreign Host name (DNS rebinding) are refused with 403 and a reason.
  const api = new URL('api/fault', url);
  const post = (headers) => new Promise((res, rej) => {
    const body = JSON.stringify({ stack: 'wt', mode: 'blackhole' });
    const req = httpRequest(api, { method: 'POST', headers: { 'content-type': 'text/plain', ...headers } }, (r) => {
      let text = '';
      r.on('data', (d) => { text += d; });
      r.on('end', () => res({ status: r.statusCode, text }));
    });
    req.on('error', rej);
    req.end(body);
  });
  const faultsNow = async () => JSON.stringify((await (await fetch(new URL('api/config', url))).json()).faults);
  const before = await faultsNow();
  const csrf = await post({ origin: 'https://evil.example' });
  check(csrf.status === 403 && csrf.text.includes('cross-site'), `a cross-site POST is refused: ${csrf.status} ${csrf.text}`);
  const rebound = await post({ host: `evil.example:${api.port}` });
  check(rebound.status === 403 && rebound.text.includes('loopback'), `a foreign Host is refused: ${rebound.status} ${rebound.text}`);
  check(await faultsNow() === before, 'and neither changed the faults');

  // Console errors from the faults are expected (Chromium logs the refused QUIC
  // handshake); uncaught exceptions in the page are not.
  const errors = logs.filter((l) => l.startsWith('pageerror'));
  check(errors.length === 0, `no uncaught page errors${errors.length ? `: ${errors.join(' | ')}` : ''}`);
} catch (e) {
  failed = true;
  console.error(`FAILED: ${e.message}`);
  console.error(server.stderr());
} finally {
  await browser?.close();
  server.child.kill();
  rmSync(profile, { recursive: true, force: true });
}
process.exit(failed ? 1 : 0);
