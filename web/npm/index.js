// postsocket for JS: the TAPS (RFC 9622) API over the raw wasm-bindgen
// bindings in ./postsocket_web.js. Names follow the RFC in JS case.
import initWasm, {
  RawPreconnection, receiveResolvers, stagingArea, stagingCapacity, setErrorClass,
  contextSave, contextRestore, contextForget, contextJson, contextNetworkChanged,
  pathChanged as rawPathChanged, watchPlatformPaths as rawWatchPlatformPaths,
} from './postsocket_web.js';

/**
 * Every error postsocket throws or rejects with (but an AbortSignal's own
 * reason, and a TypeError for a value of the wrong kind): `name` is the RFC
 * event (`EstablishmentError`, `SendError`, `Expired`, `ReceiveError`,
 * `ConnectionError`, `CloneError`, `InvalidConfiguration`,
 * `InvalidMessageProperties`), `reason` the RFC 9623 reason, `candidates`
 * why each candidate failed (an EstablishmentError's), and `cause` the
 * error underneath when there is one. `e instanceof TransportError` tells
 * them from other errors.
 */
export class TransportError extends Error {
  constructor(message, { name = 'TransportError', reason = 'Unknown', candidates = [], cause } = {}) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = name;
    this.reason = reason;
    this.candidates = candidates;
  }
}

let loading = null;
let loaded = false;
// The send staging area (see `send`): wasm memory, and where and how much.
let memory = null;
let memoryBytes = null;
let stagingAt = 0;
let stagingSize = 0;
// Where a waiting receive's resolve and reject go, at its slot (see `receive`).
let receiveResolve = null;
let receiveReject = null;

/**
 * Load the WebAssembly module. Call (and await) it once before anything
 * else; later calls return the same Promise. `input` is what wasm-bindgen's
 * init takes (a URL, Response, BufferSource or WebAssembly.Module); by
 * default the .wasm next to this file.
 */
export function init(input) {
  if (!loading) {
    loading = initWasm(input === undefined ? undefined : { module_or_path: input }).then((exports) => {
      memory = exports.memory;
      stagingAt = stagingArea();
      stagingSize = stagingCapacity();
      [receiveResolve, receiveReject] = receiveResolvers();
      setErrorClass(TransportError);
      loaded = true;
    });
  }
  return loading;
}

function needsInit(what) {
  if (!loaded) throw new Error(`postsocket: call \`await init()\` once before ${what}`);
}

/** The `localStorage` key `transportContext.save()` and `restore()` use by default. */
export const CONTEXT_STORAGE_KEY = 'postsocket.transportContext';

/**
 * The page's TransportContext: what earlier races taught (which stacks and
 * addresses worked or failed, handshake times, blackholed IPv6 or UDP), used
 * by every Preconnection of the page to order, hold back and time its
 * candidates. Each such decision is a trace event (`reordered`,
 * `held_back`, `attempt_delay`, `probe`) with its reason.
 */
export const transportContext = {
  /** Save it to `localStorage` under `key`. Throws an `InvalidConfiguration` Error if storage refuses. */
  save(key = CONTEXT_STORAGE_KEY) {
    needsInit('transportContext.save()');
    contextSave(key);
  },
  /**
   * Restore what `save()` stored under `key`: `false` when nothing is
   * stored. A stored text this version cannot read throws an
   * `InvalidConfiguration` Error saying why and leaves the context empty.
   */
  restore(key = CONTEXT_STORAGE_KEY) {
    needsInit('transportContext.restore()');
    return contextRestore(key);
  },
  /** Forget everything learned (what is saved stays until the next save). */
  forget() {
    needsInit('transportContext.forget()');
    contextForget();
  },
  /** The network changed: forget what was learned on it (done on the browser's `online` and `navigator.connection` `change` events). */
  networkChanged() {
    needsInit('transportContext.networkChanged()');
    contextNetworkChanged();
  },
  /** Everything it remembers, as the documented JSON object. */
  toJSON() {
    needsInit('transportContext.toJSON()');
    return JSON.parse(contextJson());
  },
};

/**
 * The network path changed (`what`, a string, says how): every open Connection gets a
 * `pathChange` event whose `detail` is `what`, and `transportContext` forgets what it learned
 * on the old network. Returns how many Connections were told. postsocket does this itself on
 * the browser's `online`, `offline` and `navigator.connection` `change` events (unless
 * `watchPlatformPaths(false)`); call it when the page learns of a change some other way.
 */
export function pathChanged(what) {
  needsInit('pathChanged()');
  if (typeof what !== 'string') throw new TypeError('pathChanged(what): what must be a string');
  return rawPathChanged(what);
}

/**
 * Whether the browser's `online`, `offline` and `navigator.connection` `change` events are
 * path changes (`pathChange` events, and `transportContext` forgetting the network): `true` by
 * default; `false` until `watchPlatformPaths(true)`. `pathChanged()` works either way.
 */
export function watchPlatformPaths(on) {
  needsInit('watchPlatformPaths()');
  if (typeof on !== 'boolean') throw new TypeError('watchPlatformPaths(on): on must be true or false');
  rawWatchPlatformPaths(on);
}

const encoder = new TextEncoder();

function bytes(data) {
  if (typeof data === 'string') return encoder.encode(data);
  if (data instanceof Uint8Array) return data;
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  throw new TypeError(
    `postsocket: a message is a Uint8Array, ArrayBuffer, typed array or string, not ${data === null ? 'null' : typeof data}`,
  );
}

/** The Promise of the receive waiting at `slot`: wasm settles it through the resolvers left there. */
function waitAt(slot) {
  return new Promise((resolve, reject) => {
    receiveResolve[slot] = resolve;
    receiveReject[slot] = reject;
  });
}

/**
 * A Preconnection (RFC 9622 §6): whom to reach and what the transport must
 * provide. Emits a `trace` event (a CustomEvent whose `detail` is a trace
 * event object) for each step of the race while `initiate()` runs.
 */
export class Preconnection extends EventTarget {
  #raw;
  #saveContext = null;

  constructor(options = {}) {
    super();
    if (!loaded) {
      throw new Error('postsocket: call `await init()` once before `new Preconnection(...)`');
    }
    const { saveContext, ...rest } = options ?? {};
    if (saveContext === true) this.#saveContext = CONTEXT_STORAGE_KEY;
    else if (typeof saveContext === 'string') this.#saveContext = saveContext;
    else if (saveContext !== undefined && saveContext !== false) {
      throw new TypeError('postsocket: `saveContext` is true, false or a localStorage key');
    }
    this.#raw = new RawPreconnection(options === null ? null : rest, (event) => {
      this.dispatchEvent(new CustomEvent('trace', { detail: event }));
    });
  }

  /** After a race: save the page's context if asked to; a failure is a `contextError` event. */
  #saved(promise) {
    if (this.#saveContext === null) return promise;
    const save = () => {
      try {
        transportContext.save(this.#saveContext);
      } catch (e) {
        this.dispatchEvent(new CustomEvent('contextError', { detail: e }));
      }
    };
    return promise.finally(save);
  }

  /**
   * `Initiate()` (§7.1): race the candidates. Resolves with the Connection
   * at Ready; rejects with an Error named `EstablishmentError` whose
   * `candidates` say why each candidate failed. With `signal` (an
   * AbortSignal), aborting it ends the race (every attempt is dropped) and
   * rejects with the signal's reason.
   */
  async initiate({ timeout, signal } = {}) {
    const raw = await this.#saved(this.#raw.initiate(timeout, signal));
    return new Connection(raw);
  }

  /**
   * `InitiateWithSend(messageData, messageContext?)` (§7.1): race as
   * `initiate()` does, with `data` as the first Message. Resolves with
   * `{ connection, sent, sendError }` once the Connection is Ready and the
   * first Message went to the stack: `sent` is `{ sequence }` as `send()`
   * gives it and `sendError` null, or `sent` is null and `sendError` the
   * TransportError (`SendError` / `Expired`) — the Connection is yours
   * either way. Rejects as `initiate()` does, and with
   * `InvalidMessageProperties` for a bad property. With `signal` (an
   * AbortSignal), aborting it ends the race and rejects with its reason.
   */
  async initiateWithSend(data, messageProperties, { signal } = {}) {
    const { connection, sent, sendError } = await this.#saved(
      this.#raw.initiateWithSend(bytes(data), messageProperties, signal),
    );
    return { connection: new Connection(connection), sent, sendError };
  }

  /**
   * `Rendezvous()` (§7.3) over a WebRTC data channel: POSTs this page's
   * offer to `signalingUrl` and takes the answer from the response. Needs
   * `protocols: ['webrtc']`. Resolves with the Connection once the channel
   * is open; rejects with an Error named `EstablishmentError`. With
   * `signal` (an AbortSignal), aborting it ends the Rendezvous and rejects
   * with the signal's reason.
   */
  async rendezvous({ signalingUrl, signal } = {}) {
    if (typeof signalingUrl !== 'string') {
      throw new TypeError('postsocket: rendezvous({ signalingUrl }) needs the signaling URL as a string');
    }
    const raw = await this.#raw.rendezvous(signalingUrl, signal);
    return new Connection(raw);
  }
}

const TERMINAL = new Set(['closed', 'connectionError']);

/**
 * A Connection (RFC 9622 §7). An EventTarget with the unsolicited events
 * `closed`, `connectionError`, `softError`, `pathChange`, `cloneError`
 * (CustomEvents; `detail` is the Error or the text), and an async iterator
 * of received Messages: `for await (const msg of connection)`.
 */
export class Connection extends EventTarget {
  #raw;

  /** @internal Made by `Preconnection.initiate()`. */
  constructor(raw) {
    super();
    this.#raw = raw;
    this.#pump();
  }

  async #pump() {
    for (;;) {
      const event = await this.#raw.nextEvent();
      if (event === null) return;
      this.dispatchEvent(new CustomEvent(event.type, { detail: event.error ?? event.detail ?? null }));
      if (TERMINAL.has(event.type)) return; // nothing follows Closed or ConnectionError
    }
  }

  /** The protocol stack that won the race: `ws`, `wss`, ... */
  get stack() {
    return this.#raw.stack;
  }

  /** `connState`: `establishing`, `established`, `closing` or `closed`. */
  get state() {
    return this.#raw.state;
  }

  /** The remote `ip:port`, if known. */
  get remoteAddress() {
    return this.#raw.remoteAddress;
  }

  /** The RacingTrace of the establishment: every trace event, in order. */
  get trace() {
    return this.#raw.trace();
  }

  /**
   * `Send(messageData, messageContext?, endOfMessage?)` (§9.2). Resolves at
   * `Sent` (the browser took the bytes) with `{ sequence }`; rejects with an
   * Error named `SendError` or `Expired`.
   */
  send(data, messageProperties, endOfMessage = true) {
    try {
      const b = bytes(data); // throws a TypeError for what is not a message
      if (b.length > stagingSize) return this.#raw.send(b, messageProperties, endOfMessage);
      // Up to 64 KiB: copied into wasm memory here, and a Message sent at
      // once comes back as its sequence number (no Promise made in wasm).
      // A view of a memory that grew since is detached: its length is 0
      // (the module's memory is not shared).
      if (memoryBytes === null || memoryBytes.byteLength === 0) memoryBytes = new Uint8Array(memory.buffer);
      memoryBytes.set(b, stagingAt);
      const sequence = this.#raw.sendStaged(b.length, messageProperties, endOfMessage);
      return sequence >= 0 ? Promise.resolve({ sequence }) : this.#raw.takePromise();
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /**
   * `Receive(minIncompleteLength?, maxLength?)` (§9.3). Resolves with
   * `{ data, endOfMessage, partial, messageContext }`; rejects with an Error
   * named `ReceiveError`. With `signal` (an AbortSignal), aborting it
   * rejects a receive still waiting with the signal's reason (an
   * `AbortError`) and lets go of it: nothing is lost, the next receive gets
   * what arrives.
   */
  receive(options) {
    const signal = options?.signal;
    // Checked before the receive starts: one that started and then could
    // not be watched would take the next Message for nobody.
    if (signal != null && typeof signal.addEventListener !== 'function') {
      return Promise.reject(new TypeError('receive: options.signal is not an AbortSignal'));
    }
    if (signal?.aborted) return Promise.reject(signal.reason);
    // The raw call answers a Promise when the outcome is known at once (bad
    // limits reject), else the receive's slot: its Promise is made here,
    // and wasm settles it through the resolvers left at the slot.
    const r = options == null
      ? this.#raw.receiveStart(undefined, undefined)
      : this.#raw.receiveStart(options.minIncompleteLength, options.maxLength);
    if (typeof r !== 'number') return r;
    if (!signal) return waitAt(r);
    return new Promise((resolve, reject) => {
      const onAbort = () => {
        // Still waiting: drop it in wasm, and reject here.
        if (this.#letGo(r)) reject(signal.reason);
      };
      signal.addEventListener('abort', onAbort, { once: true });
      receiveResolve[r] = (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      };
      receiveReject[r] = (e) => {
        signal.removeEventListener('abort', onAbort);
        reject(e);
      };
    });
  }

  /** Let go of the receive waiting at `slot`: `false` if it was settled already. */
  #letGo(slot) {
    if (!this.#raw.receiveCancel(slot)) return false;
    receiveResolve[slot] = undefined;
    receiveReject[slot] = undefined;
    return true;
  }

  /**
   * `Clone(connectionProperties?)` (§7.4): a new Connection in this one's
   * group, to the same remote: a new WebSocket, a new WebTransport stream
   * on the same session, or a new data channel on the same peer
   * connection. `properties` (Connection Properties by RFC name) change
   * the clone's; the rest are this Connection's. Rejects with an Error
   * named `CloneError`, or `InvalidConfiguration` for a bad property.
   */
  async clone(properties) {
    return new Connection(await this.#raw.clone(properties));
  }

  /** `Close()` (§10): send what is queued, then close. */
  close() {
    return this.#raw.close();
  }

  /** `Abort()` (§10): stop at once; queued Messages fail. */
  abort() {
    this.#raw.abort();
  }

  /** `GetProperty(name)`: a Connection Property by RFC name. */
  getProperty(name) {
    return this.#raw.getProperty(name);
  }

  /** `SetProperty(name, value)` (§8). Throws an Error saying what was wrong. */
  setProperty(name, value) {
    this.#raw.setProperty(name, value);
  }

  /**
   * Received Messages until the Connection closes: `for await (const msg
   * of connection)`. Ends quietly after a close (either side's) and throws
   * the ReceiveError of a failure. Leaving the loop (`break`, `return`, an
   * exception) or calling the iterator's `return()` while it waits lets go
   * of the waiting receive: nothing is lost, a later receive gets what
   * arrives.
   */
  [Symbol.asyncIterator]() {
    let slot = null; // the waiting receive's slot
    let endWaiting = null; // ends the waiting next() when return() lets go of its receive
    let done = false;
    const ended = () => ({ value: undefined, done: true });
    const stop = () => {
      done = true;
      if (slot !== null && this.#letGo(slot)) {
        slot = null;
        endWaiting?.(ended());
      }
    };
    return {
      next: () => {
        if (done) return Promise.resolve(ended());
        // As receive() does: a slot whose Promise is made here, or a
        // Promise when the outcome is known at once.
        const r = this.#raw.receiveStart(undefined, undefined);
        if (typeof r === 'number') slot = r;
        // The slot is let go of as wasm settles it (not a microtask later,
        // when wasm may already have given it to another receive).
        const received = typeof r === 'number'
          ? new Promise((resolve, reject) => {
            receiveResolve[r] = (v) => {
              if (slot === r) slot = null;
              resolve(v);
            };
            receiveReject[r] = (e) => {
              if (slot === r) slot = null;
              reject(e);
            };
          })
          : r;
        return new Promise((resolve, reject) => {
          endWaiting = resolve;
          received.then(
            (value) => {
              resolve({ value, done: false });
            },
            (e) => {
              done = true;
              // The peer finished cleanly (WebSocket close 1000 or 1001, a
              // WebTransport stream's end), or this side closed: the end.
              if (e.reason === 'PeerFinished' || this.state === 'closed' || this.state === 'closing') {
                resolve(ended());
              } else {
                reject(e);
              }
            },
          );
        });
      },
      return: () => {
        stop();
        return Promise.resolve(ended());
      },
      throw: (e) => {
        stop();
        return Promise.reject(e);
      },
      [Symbol.asyncIterator]() {
        return this;
      },
    };
  }
}
