// Shared by e2e.mjs and bench.mjs: a static file server for web/ (the example
// page and the built package in web/pkg) and a headless browser: Chromium through
// playwright-core (the system's /usr/bin/chromium), or with BROWSER=firefox Firefox
// ESR through puppeteer-core over WebDriver BiDi (the system's /usr/bin/firefox-esr;
// FIREFOX overrides the path). Nothing is downloaded.
import { createServer } from 'node:http';
import { readFile, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { extname, join, normalize, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import puppeteer from 'puppeteer-core';

/** web/ */
export const WEB = resolve(fileURLToPath(new URL('..', import.meta.url)));

const TYPES = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.wasm': 'application/wasm',
  '.json': 'application/json',
  '.ts': 'text/plain; charset=utf-8',
  '.md': 'text/plain; charset=utf-8',
};

/**
 * Serve `root` on 127.0.0.1 (a secure context) at a free port. `isolated`:
 * make the pages cross-origin isolated (COOP and COEP headers), which gives
 * them performance.now() at 5 us resolution instead of 100 us.
 */
export async function serve(root = WEB, { isolated = false } = {}) {
  const isolation = isolated
    ? { 'cross-origin-opener-policy': 'same-origin', 'cross-origin-embedder-policy': 'require-corp' }
    : {};
  const server = createServer(async (req, res) => {
    const path = decodeURIComponent(new URL(req.url, 'http://x').pathname);
    if (path === '/favicon.ico') {
      res.writeHead(204).end();
      return;
    }
    let file = normalize(join(root, path));
    if (!file.startsWith(root + sep)) {
      res.writeHead(403).end();
      return;
    }
    if (path.endsWith('/')) file = join(file, 'index.html');
    try {
      const body = await readFile(file);
      res.writeHead(200, { 'content-type': TYPES[extname(file)] ?? 'application/octet-stream', ...isolation });
      res.end(body);
    } catch {
      res.writeHead(404).end(`not found: ${path}`);
    }
  });
  await new Promise((ok) => server.listen(0, '127.0.0.1', ok));
  const { port } = server.address();
  return { url: `http://127.0.0.1:${port}`, close: () => new Promise((ok) => server.close(ok)) };
}

/** The browser the tests run in: `chromium` (default) or `firefox` (BROWSER). */
export const BROWSER = process.env.BROWSER ?? 'chromium';

/** Headless Chromium, or Firefox with BROWSER=firefox (see `launchFirefox`). */
export async function launch() {
  if (BROWSER === 'firefox') return launchFirefox();
  if (BROWSER !== 'chromium') throw new Error(`BROWSER is chromium or firefox, not ${BROWSER}`);
  return launchChromium();
}

/**
 * Headless Firefox ESR over WebDriver BiDi (puppeteer-core), with a fresh
 * profile and the prefs WebRTC needs on loopback (loopback ICE candidates, host
 * addresses not hidden behind mDNS names). Its page has the Playwright methods
 * the tests use (`playwrightLike`).
 */
async function launchFirefox() {
  const profile = await mkdtemp(join(tmpdir(), 'postsocket-firefox-'));
  const browser = await puppeteer.launch({
    browser: 'firefox',
    executablePath: process.env.FIREFOX ?? '/usr/bin/firefox-esr',
    headless: true,
    userDataDir: profile,
    extraPrefsFirefox: {
      'media.peerconnection.ice.loopback': true,
      'media.peerconnection.ice.obfuscate_host_addresses': false,
      'media.peerconnection.ice.default_address_only': false,
    },
    timeout: 60000,
  });
  const raw = (await browser.pages())[0] ?? (await browser.newPage());
  raw.on('console', (m) => console.log(`  [page console.${m.type()}] ${m.text()}`));
  raw.on('pageerror', (e) => console.log(`  [page error] ${e.message}`));
  return { page: playwrightLike(raw, profile), close: async () => {
    await browser.close();
    await rm(profile, { recursive: true, force: true });
  } };
}

/**
 * The subset of Playwright's Page the tests use (the npm package's and the
 * www demo's), over a puppeteer page. Like Playwright, element actions wait
 * (up to 30 s) for their element; a click waits for it to be enabled too.
 * Files for `setInputFiles` given as a buffer are written under `dir`.
 */
function playwrightLike(raw, dir) {
  const present = (selector, timeout = 30000) => raw.waitForSelector(selector, { timeout });
  const enabled = (selector) => raw.waitForFunction(
    (s) => { const e = document.querySelector(s); return e && !e.disabled; }, { timeout: 30000 }, selector);
  return {
    goto: (url) => raw.goto(url),
    on: (event, handler) => raw.on(event, handler),
    evaluate: (fn, arg) => raw.evaluate(fn, arg),
    waitForFunction: (fn, arg, options) => raw.waitForFunction(fn, options ?? {}, arg),
    waitForSelector: (selector, options) => present(selector, options?.timeout),
    textContent: async (selector) => { await present(selector); return raw.$eval(selector, (e) => e.textContent); },
    getAttribute: async (selector, name) => {
      await present(selector);
      return raw.$eval(selector, (e, n) => e.getAttribute(n), name);
    },
    click: async (selector) => { await enabled(selector); await raw.$eval(selector, (e) => e.click()); },
    fill: async (selector, text) => {
      await present(selector);
      await raw.$eval(selector, (e, t) => { e.value = t; e.dispatchEvent(new Event('input', { bubbles: true })); }, text);
    },
    check: (selector) => setChecked(selector, true),
    uncheck: (selector) => setChecked(selector, false),
    selectOption: async (selector, value) => { await present(selector); await raw.select(selector, value); },
    screenshot: (options) => raw.screenshot(options),
    setViewportSize: (size) => raw.setViewport(size),
    setInputFiles: async (selector, file) => {
      let path = file;
      if (typeof file !== 'string') {
        path = join(dir, file.name);
        await writeFile(path, file.buffer);
      }
      await (await present(selector)).uploadFile(path);
    },
  };
  async function setChecked(selector, want) {
    await present(selector);
    await raw.$eval(selector, (e, w) => { if (e.checked !== w) e.click(); }, want);
  }
}

/** Headless Chromium, with the flags a closed network needs (no background connections that
 * would be refused) and a fresh profile. */
async function launchChromium() {
  const profile = await mkdtemp(join(tmpdir(), 'postsocket-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--disable-dev-shm-usage',
      // WebRTC on loopback: without these Chromium gathers no loopback candidate and asks
      // for media permission.
      '--allow-loopback-in-peer-connection',
      '--use-fake-ui-for-media-stream',
    ],
    timeout: 30000,
  });
  const page = context.pages()[0] ?? (await context.newPage());
  page.on('console', (m) => console.log(`  [page console.${m.type()}] ${m.text()}`));
  page.on('pageerror', (e) => console.log(`  [page error] ${e.message}`));
  return {
    page,
    close: async () => {
      await context.close();
      await rm(profile, { recursive: true, force: true });
    },
  };
}

/** A port from the environment (ws-echo's POSTSOCKET_WS_* lines). */
export function port(name) {
  const v = Number(process.env[name]);
  if (!Number.isInteger(v) || v <= 0) {
    console.error(`${name} is not set: start ws-echo and pass its POSTSOCKET_WS_* lines (scripts/test.sh does)`);
    process.exit(2);
  }
  return v;
}

/**
 * Serve web/, launch Chromium and open the example page against ws-echo on
 * `echo`, waiting until the page has run. Returns `{ server, browser, page }`.
 * `options` go to `serve`.
 */
export async function openExample(echo, options) {
  const server = await serve(WEB, options);
  const browser = await launch();
  const { page } = browser;
  await page.goto(`${server.url}/example/index.html?port=${echo}`);
  await page.waitForFunction(() => document.body.dataset.status !== 'running', null, { timeout: 20000 });
  return { server, browser, page };
}
