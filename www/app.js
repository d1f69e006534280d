// The postsocket www demo: choose what the application needs, break a stack
// on the server, connect through the npm package and watch the race live.
import { model, renderHistory, renderTree, renderTimeline, summary } from './trace-view.js';

const $ = (sel) => document.querySelector(sel);
const body = document.body;

// Selection properties shown, with their RFC 9622 defaults, but for
// preserveMsgBoundaries: the demo's echo server speaks Messages, so the page
// requires them and every stack carries them whichever wins (a WebTransport
// stream with a length prefix per Message). It is shown, not changeable.
const FIXED = { preserveMsgBoundaries: 'the echo server speaks Messages: every stack keeps their boundaries (WebTransport streams with a length prefix)' };
const PROPERTIES = [
  ['reliability', 'require'],
  ['preserveMsgBoundaries', 'require'],
  ['perMsgReliability', 'noPreference'],
  ['preserveOrder', 'require'],
  ['multistreaming', 'prefer'],
  ['zeroRttMsg', 'noPreference'],
];
const LEVELS = ['require', 'prefer', 'noPreference', 'avoid', 'prohibit'];

let config = null;
let postsocket = null;
let connection = null;
let shown = { source: '', events: [], attemptDelay: 250 };
let racing = null; // { start, frame } while a race runs in the page

function setState(state, text) {
  body.dataset.state = state;
  $('#status').textContent = text;
}

function draw(now = null) {
  const m = model(shown.events);
  renderTimeline($('#timeline'), m, { now, attemptDelay: shown.attemptDelay });
  renderTree($('#tree'), m);
  renderHistory($('#history'), m);
  $('#race-source').textContent = shown.source ? `(${shown.source})` : '';
  $('#export').disabled = shown.events.length === 0;
  return m;
}

function show(source, events, attemptDelay) {
  shown = { source, events, attemptDelay };
  const m = draw();
  body.dataset.winner = m.winner?.stack ?? '';
  return m;
}

function buildProperties() {
  const box = $('#properties');
  for (const [name, def] of PROPERTIES) {
    const select = document.createElement('select');
    select.name = name;
    select.setAttribute('aria-label', name);
    if (FIXED[name]) {
      select.disabled = true;
      select.title = FIXED[name];
    }
    for (const level of LEVELS) {
      const o = new Option(level === 'noPreference' ? 'no preference' : level, level, level === def, level === def);
      select.append(o);
    }
    const row = document.createElement('label');
    row.className = 'prop';
    const code = document.createElement('code');
    code.textContent = name;
    row.append(code, select);
    box.append(row);
  }
}

async function loadConfig() {
  const r = await fetch('api/config');
  if (!r.ok) throw new Error(`api/config: HTTP ${r.status}`);
  return r.json();
}

async function post(path, value) {
  const r = await fetch(path, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(value) });
  const data = await r.json();
  if (!r.ok) throw new Error(data.error ?? `${path}: HTTP ${r.status}`);
  return data;
}

async function applyFaults() {
  for (const div of document.querySelectorAll('.fault')) {
    const mode = div.querySelector('[name=mode]').value;
    const ms = Number(div.querySelector('[name=ms]').value);
    await post('api/fault', { stack: div.dataset.stack, mode, ...(mode === 'delay' ? { ms } : {}) });
  }
}

function security(hash) {
  switch ($('#security').value) {
    case 'disabled': return { disabled: true };
    case 'required': return { pinnedServerCertificate: [hash] };
    default: return { opportunistic: true, pinnedServerCertificate: [hash] };
  }
}

async function connect() {
  $('#connect').disabled = true;
  $('#send').disabled = true;
  if (connection) {
    // A Connection the page moves on from ends cleanly: close() sends what is
    // queued and tells the peer (abort() would read as a failure there).
    const previous = connection;
    connection = null;
    previous.close().catch(() => previous.abort());
  }
  const protocols = [...document.querySelectorAll('[name=stack]:checked')].map((i) => i.value);
  const adaptive = $('#adaptive').checked;
  const attemptDelay = Number($('#delay').value);
  const events = [];
  show('this page', events, attemptDelay);
  setState('racing', 'Racing…');
  try {
    config = await loadConfig(); // the certificate hash may have rotated
    await applyFaults();
    const properties = {};
    for (const s of document.querySelectorAll('#properties select')) properties[s.name] = s.value;
    const host = $('#host').value;
    const remote = /^[0-9.]+$/.test(host) ? { ip: host, port: Number($('#port').value) } : { host, port: Number($('#port').value) };
    const pre = new postsocket.Preconnection({
      remote,
      properties,
      protocols,
      security: security(config.wt_cert_sha256),
      protocolOptions: { 'ws.path': config.ws_path, 'wt.path': config.wt_path },
      // Adaptive: the delay after an attempt follows its remembered handshake
      // time (250 ms where none is known); otherwise the value as given.
      ...(adaptive ? {} : { connectionAttemptDelay: attemptDelay }),
      // What this race teaches the page's TransportContext is kept in localStorage.
      saveContext: true,
    });
    pre.addEventListener('contextError', (e) => {
      $('#memory').textContent = `Could not save what racing learned: ${e.detail.message}`;
    });
    pre.addEventListener('trace', (e) => {
      events.push(e.detail);
    });
    racing = { start: performance.now() };
    const tick = () => {
      if (!racing) return;
      draw(performance.now() - racing.start);
      racing.frame = requestAnimationFrame(tick);
    };
    tick();
    connection = await pre.initiate({ timeout: 10000 });
    stopRacing();
    const m = show('this page', connection.trace.length ? connection.trace : events, attemptDelay);
    setState('ready', `Ready: ${summary(m)}`);
    watch(connection);
    $('#send').disabled = false;
  } catch (e) {
    stopRacing();
    const m = show('this page', events, attemptDelay);
    const why = (e.candidates ?? []).map((c) => `${c.id} ${c.stack ?? ''} ${c.address ?? ''}: ${c.reason}`).join('; ');
    setState('failed', `${e.name ?? 'Error'}: ${e.message}${why && !e.message.includes(why) ? ` (${why})` : ''}`);
    body.dataset.winner = m.winner?.stack ?? '';
  } finally {
    $('#connect').disabled = false;
    showMemory();
  }
}

/** A line on what the page's TransportContext holds now. */
function showMemory(prefix = '') {
  const ctx = postsocket.transportContext.toJSON();
  const now = Date.now();
  const nets = ctx.networks ?? [];
  const targets = nets.reduce((n, net) => n + (net.targets?.length ?? 0), 0);
  const held = nets.flatMap((net) => net.stacks ?? []).filter((s) => (s.held_until_ms ?? 0) > now);
  const heldText = held.map((s) => `${s.stack} to ${s.destination} for ${Math.ceil((s.held_until_ms - now) / 1000)} s`).join(', ');
  $('#memory').textContent = `${prefix}Remembered: ${targets} address/stack record${targets === 1 ? '' : 's'}`
    + `${held.length ? `; held back: ${heldText}` : '; nothing held back'}. Saved in localStorage.`;
}

function forget() {
  postsocket.transportContext.forget();
  postsocket.transportContext.save();
  showMemory('Forgotten. ');
}

/** Rendezvous (RFC 9622 §7.3) over a WebRTC data channel with the server's native peer. */
async function rendezvous() {
  $('#rendezvous').disabled = true;
  $('#send').disabled = true;
  if (connection) {
    // A Connection the page moves on from ends cleanly: close() sends what is
    // queued and tells the peer (abort() would read as a failure there).
    const previous = connection;
    connection = null;
    previous.close().catch(() => previous.abort());
  }
  show('this page', [], null);
  setState('racing', 'Rendezvous: offer → POST /api/offer → answer → ICE → DTLS → SCTP…');
  try {
    const properties = {};
    for (const s of document.querySelectorAll('#properties select')) properties[s.name] = s.value;
    const pre = new postsocket.Preconnection({ remote: [], properties, protocols: ['webrtc'] });
    const t0 = performance.now();
    connection = await pre.rendezvous({ signalingUrl: new URL('api/offer', location.href).href });
    setState('ready', `Ready: webrtc data channel after ${(performance.now() - t0).toFixed(1)} ms (Rendezvous: one peer, nothing to race)`);
    body.dataset.winner = 'webrtc';
    watch(connection);
    $('#send').disabled = false;
  } catch (e) {
    setState('failed', `${e.name ?? 'Error'}: ${e.message}`);
  } finally {
    $('#rendezvous').disabled = false;
  }
}

/** How each Connection the page moved on from ended (`closed`, or the ConnectionError's message). */
const previousEndings = [];

/** Report the end of `conn`, unless the page has moved on to another Connection. */
function watch(conn) {
  conn.addEventListener('closed', () => {
    if (connection === conn) setState('closed', 'Connection closed');
    else previousEndings.push('closed');
  });
  conn.addEventListener('connectionError', (e) => {
    if (connection === conn) setState('failed', `ConnectionError: ${e.detail.message}`);
    else previousEndings.push(`ConnectionError: ${e.detail.message}`);
  });
}

function stopRacing() {
  if (racing?.frame) cancelAnimationFrame(racing.frame);
  racing = null;
}

async function send(ev) {
  ev.preventDefault();
  if (!connection) return;
  const text = $('#message').value;
  const row = document.createElement('tr');
  row.innerHTML = '<td></td><td>…</td><td></td>';
  row.cells[0].textContent = text;
  row.cells[0].title = `${text.length} characters`;
  $('#messages tbody').prepend(row);
  try {
    const props = $('#unreliable').checked ? { msgReliable: false } : {};
    const t0 = performance.now();
    await connection.send(text, props);
    const reply = await connection.receive();
    const rtt = performance.now() - t0;
    row.cells[1].textContent = new TextDecoder().decode(reply.data);
    row.cells[1].title = `${row.cells[1].textContent.length} characters`;
    row.cells[2].textContent = `${rtt.toFixed(2)} ms`;
    row.dataset.rtt = rtt.toFixed(3);
  } catch (e) {
    row.cells[1].textContent = `${e.name ?? 'Error'}: ${e.message}`;
  }
}

async function runNative() {
  const name = $('#scenario').value;
  $('#run-native').disabled = true;
  setState('racing', `The server is racing natively: ${name}…`);
  try {
    const report = await post('api/native-race', { scenario: name });
    const m = show(`native: ${name}`, report.trace.events, 250);
    setState('ready', `Native race: ${summary(m)}`);
    $('#native-info').textContent = `${report.setup}. Ready after ${report.ready_ms.toFixed(1)} ms; echo round trip ${report.rtt_ms.toFixed(2)} ms. Expected: ${report.scenario.expect}.`;
  } catch (e) {
    setState('failed', `Native race failed: ${e.message}`);
  } finally {
    $('#run-native').disabled = false;
  }
}

function exportTrace() {
  const blob = new Blob([JSON.stringify({ source: shown.source, attemptDelay: shown.attemptDelay, events: shown.events }, null, 1)], { type: 'application/json' });
  const a = document.createElement('a');
  a.href = URL.createObjectURL(blob);
  a.download = `postsocket-trace-${Date.now()}.json`;
  a.click();
  setTimeout(() => URL.revokeObjectURL(a.href), 1000);
}

/** Accepts `{events:[...]}`, a bare array, or JSON lines (`tapscat --trace`). */
export function parseTrace(text) {
  const t = text.trim();
  let v;
  try {
    v = JSON.parse(t);
  } catch {
    v = t.split('\n').filter((l) => l.trim()).map((l, i) => {
      try { return JSON.parse(l); } catch (e) { throw new Error(`line ${i + 1} is not JSON: ${e.message}`); }
    });
  }
  const events = Array.isArray(v) ? v : v?.events;
  if (!Array.isArray(events)) throw new Error('expected {"events": [...]}, an array of events, or JSON lines');
  events.forEach((e, i) => {
    if (typeof e?.t_ms !== 'number' || typeof e?.event !== 'string' || typeof e?.id !== 'string') {
      throw new Error(`event ${i + 1} lacks t_ms, event or id`);
    }
  });
  return { events, attemptDelay: typeof v?.attemptDelay === 'number' ? v.attemptDelay : 250, source: v?.source };
}

async function importTrace(ev) {
  const file = ev.target.files?.[0];
  if (!file) return;
  try {
    const t = parseTrace(await file.text());
    const m = show(`imported: ${file.name}`, t.events, t.attemptDelay);
    setState('ready', `Imported: ${summary(m)}`);
  } catch (e) {
    setState('failed', `Import failed: ${e.message}`);
  }
  ev.target.value = '';
}

async function main() {
  buildProperties();
  $('#connect').addEventListener('click', connect);
  $('#rendezvous').addEventListener('click', rendezvous);
  $('#send-form').addEventListener('submit', send);
  $('#run-native').addEventListener('click', runNative);
  $('#export').addEventListener('click', exportTrace);
  $('#import').addEventListener('change', importTrace);
  $('#forget').addEventListener('click', forget);
  window.addEventListener('resize', () => draw());
  try {
    config = await loadConfig();
    $('#port').value = config.echo_port;
    for (const div of document.querySelectorAll('.fault')) {
      const f = config.faults[div.dataset.stack === 'wt' ? 'udp' : 'tcp'];
      div.querySelector('[name=mode]').value = f.mode;
      if (f.ms != null) div.querySelector('[name=ms]').value = f.ms;
    }
    const races = await (await fetch('api/races')).json();
    for (const r of races) $('#scenario').append(new Option(`${r.name}: ${r.title}`, r.name));
    $('#run-native').disabled = false;
  } catch (e) {
    setState('failed', `The demo server did not answer: ${e.message}`);
    return;
  }
  try {
    postsocket = await import('/pkg/index.js');
    await postsocket.init();
  } catch (e) {
    setState('failed', `The npm package did not load (${e.message}); build it with scripts/build-npm.sh`);
    return;
  }
  let restored = '';
  try {
    restored = postsocket.transportContext.restore() ? 'Restored what earlier visits learned. ' : '';
  } catch (e) {
    restored = `What was saved could not be read (${e.message}); starting fresh. `;
  }
  showMemory(restored);
  $('#connect').disabled = false;
  $('#rendezvous').disabled = false;
  $('#forget').disabled = false;
  setState('idle', 'Press Connect to race.');
}

// For tests and the console: what the view shows.
window.postsocketDemo = { shown: () => shown, parseTrace, previousEndings: () => previousEndings };

main();
