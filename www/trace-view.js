// Draws a RacingTrace (the JSON schema of postsocket's trace.rs, the same on
// both targets) as a candidate tree and a timeline. Used live while a race
// runs in the page, and for native races the server runs and for imported
// JSON. No dependencies; plain DOM and SVG.

const SVG = 'http://www.w3.org/2000/svg';

/** The outcome of a node, from its events. */
function outcomeOf(events) {
  let outcome = 'idle';
  for (const e of events) {
    switch (e.event) {
      case 'attempt_started': outcome = 'running'; break;
      case 'attempt_succeeded': outcome = 'succeeded'; break;
      case 'won': outcome = 'won'; break;
      case 'attempt_failed': outcome = 'failed'; break;
      case 'attempt_cancelled': outcome = 'cancelled'; break;
      case 'held_back': if (outcome === 'idle') outcome = 'held'; break;
    }
  }
  return outcome;
}

/** The decisions a TransportContext made (RFC 9623 §8 caching), by event kind. */
export const HISTORY_EVENTS = {
  reordered: 'reordered', held_back: 'held back', attempt_delay: 'attempt delay', probe: 'probe',
};

/** Group a flat event list into nodes: { id, parent, branch, stack, address, host, path, events, start, end, outcome, reason, delay }. */
export function model(events) {
  const nodes = new Map();
  const order = [];
  let error = null;
  const history = events.filter((e) => HISTORY_EVENTS[e.event]);
  for (const e of events) {
    if (e.id === '0') {
      if (e.event === 'establishment_error') error = e.reason ?? 'establishment failed';
      continue;
    }
    let n = nodes.get(e.id);
    if (!n) {
      n = { id: e.id, parent: null, events: [], children: [] };
      nodes.set(e.id, n);
      order.push(n);
    }
    if (e.event === 'candidate') {
      Object.assign(n, {
        parent: e.parent ?? null, branch: e.branch, stack: e.stack,
        address: e.address, host: e.host, path: e.path, gathered: e.t_ms,
      });
    }
    n.events.push(e);
  }
  for (const n of order) {
    n.outcome = outcomeOf(n.events);
    const started = n.events.find((e) => e.event === 'attempt_started');
    n.start = started ? started.t_ms : null;
    const ended = n.events.find((e) => ['attempt_succeeded', 'attempt_failed', 'attempt_cancelled'].includes(e.event));
    const cancelled = n.events.find((e) => e.event === 'attempt_cancelled');
    n.end = cancelled ? cancelled.t_ms : ended ? ended.t_ms : null;
    const why = n.events.filter((e) => e.reason && e.event !== 'attempt_delay').pop();
    n.reason = why?.reason ?? null;
    n.reasonFromHistory = Boolean(why && HISTORY_EVENTS[why.event]);
    const delay = n.events.find((e) => e.event === 'attempt_delay')?.reason?.match(/next attempt after ([\d.]+) ms/);
    n.delay = delay ? Number(delay[1]) : null;
    if (n.parent && nodes.has(n.parent)) nodes.get(n.parent).children.push(n);
  }
  const roots = order.filter((n) => !n.parent || !nodes.has(n.parent));
  const leaves = order.filter((n) => n.branch === 'endpoint' && n.children.length === 0);
  const lastT = events.reduce((m, e) => Math.max(m, e.t_ms), 0);
  const winner = order.find((n) => n.outcome === 'won') ?? null;
  return { nodes, order, roots, leaves, error, lastT, winner, history };
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'class') node.className = v;
    else if (k.startsWith('data-')) node.setAttribute(k, v);
    else node[k] = v;
  }
  for (const c of children) if (c != null) node.append(c);
  return node;
}

function svg(tag, attrs = {}) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  return node;
}

const OUTCOME_TEXT = {
  idle: 'not started', running: 'running', succeeded: 'connected', won: 'won',
  failed: 'failed', cancelled: 'cancelled', held: 'held back',
};

function label(n) {
  switch (n.branch) {
    case 'path': return `path ${n.path ?? 'default'}`;
    case 'protocol': return `${n.stack}`;
    default: return `${n.stack ?? ''} ${n.address ?? n.host ?? ''}`.trim();
  }
}

/** The candidate tree as nested lists. */
export function renderTree(container, m) {
  container.replaceChildren();
  const list = (nodes) => el('ul', {}, ...nodes.map((n) => el('li', {
    class: `node ${n.branch ?? ''} outcome-${n.outcome}`, 'data-id': n.id,
    'data-stack': n.stack ?? '', 'data-outcome': n.outcome,
  },
  el('span', { class: 'node-id' }, n.id),
  el('span', { class: 'node-branch' }, n.branch ?? ''),
  el('span', { class: 'node-label' }, label(n)),
  n.branch === 'endpoint' ? el('span', { class: `badge outcome-${n.outcome}` }, OUTCOME_TEXT[n.outcome]) : null,
  n.reason ? el('div', { class: n.reasonFromHistory ? 'node-reason from-history' : 'node-reason' }, n.reason) : null,
  n.children.length ? list(n.children) : null)));
  container.append(list(m.roots));
}

/**
 * The timeline: a row per leaf, a bar from its start to its end (or to `now`
 * while it runs), coloured by outcome; dashed marks where the Connection
 * Attempt Delay after each start ends; an axis in ms.
 */
export function renderTimeline(container, m, { now = null, attemptDelay = null } = {}) {
  container.replaceChildren();
  const rows = m.leaves;
  const width = Math.max(container.clientWidth || 600, 320);
  const labelW = Math.min(230, Math.round(width * 0.38));
  const rowH = 30;
  const top = 24;
  const height = top + rows.length * rowH + 8;
  const span = Math.max(now ?? 0, m.lastT, attemptDelay ? attemptDelay * 1.6 : 0, 100) * 1.08;
  const x = (t) => labelW + ((width - labelW - 112) * t) / span;
  const s = svg('svg', { width, height, viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-label': 'racing timeline' });

  // Axis: ticks at a round step.
  const step = [1, 2, 5, 10, 20, 50, 100, 200, 250, 500, 1000, 2000, 5000].find((v) => span / v <= 8) ?? 10000;
  for (let t = 0; t <= span; t += step) {
    s.append(svg('line', { x1: x(t), x2: x(t), y1: top - 6, y2: height, class: 'grid' }));
    const tx = svg('text', { x: x(t), y: top - 10, class: 'tick', 'text-anchor': 'middle' });
    tx.textContent = `${t} ms`;
    s.append(tx);
  }
  rows.forEach((n, i) => {
    const y = top + i * rowH;
    const g = svg('g', { class: `row outcome-${n.outcome}`, 'data-id': n.id, 'data-stack': n.stack ?? '', 'data-outcome': n.outcome });
    const name = svg('text', { x: 4, y: y + rowH / 2 + 4, class: 'row-label' });
    name.textContent = `${n.id}  ${label(n)}`;
    g.append(name);
    if (n.start != null) {
      const end = n.end ?? now ?? m.lastT;
      g.append(svg('rect', {
        x: x(n.start), y: y + 7, width: Math.max(2, x(end) - x(n.start)), height: rowH - 14, rx: 3,
        class: `bar outcome-${n.outcome}`,
      }));
      const t0 = svg('text', { x: x(n.start) + 3, y: y + rowH / 2 + 4, class: 'bar-text' });
      t0.textContent = `${n.start.toFixed(1)}`;
      g.append(t0);
      if (n.end != null) {
        const t1 = svg('text', { x: x(n.end) + 4, y: y + rowH / 2 + 4, class: 'bar-end' });
        t1.textContent = `${n.end.toFixed(1)} ms ${OUTCOME_TEXT[n.outcome]}`;
        g.append(t1);
      }
      const delay = n.delay ?? attemptDelay;
      if (delay && n.outcome !== 'idle') {
        const t = n.start + delay;
        s.append(svg('line', { x1: x(t), x2: x(t), y1: y + 2, y2: y + rowH + rowH / 2, class: 'delay-mark' }));
      }
    }
    const title = svg('title');
    title.textContent = `${n.id} ${label(n)}: ${OUTCOME_TEXT[n.outcome]}${n.reason ? ` — ${n.reason}` : ''}`;
    g.append(title);
    s.append(g);
  });
  container.append(s);
}

/** What the TransportContext remembered and decided for this race, one line per decision. */
export function renderHistory(container, m) {
  container.replaceChildren();
  if (m.history.length === 0) {
    container.append(el('li', { class: 'history-none' }, 'Nothing: this race ran as a fresh one.'));
    return;
  }
  for (const e of m.history) {
    const n = m.nodes.get(e.id);
    container.append(el('li', { class: `history ${e.event}`, 'data-event': e.event, 'data-id': e.id },
      el('span', { class: 'node-id' }, e.id === '0' ? 'race' : e.id),
      el('b', {}, HISTORY_EVENTS[e.event]),
      n ? el('span', { class: 'node-label' }, label(n)) : null,
      el('div', { class: 'node-reason' }, e.reason ?? '')));
  }
}

/** A one-line summary: who won when, or why it failed. */
export function summary(m) {
  if (m.winner) {
    const t = m.winner.events.find((e) => e.event === 'won')?.t_ms ?? m.lastT;
    return `${m.winner.stack} ${m.winner.address ?? ''} won at ${t.toFixed(1)} ms (candidate ${m.winner.id})`;
  }
  if (m.error) return `establishment failed: ${m.error}`;
  return 'racing…';
}
