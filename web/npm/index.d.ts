// Types of the postsocket npm package (TAPS, RFC 9622, in the browser).

/** Load the WebAssembly module; await it once before `new Preconnection()`. */
export function init(
  input?: string | URL | Request | Response | BufferSource | WebAssembly.Module,
): Promise<void>;

/** A preference level (RFC 9622 §6.2). */
export type Preference = 'require' | 'prefer' | 'noPreference' | 'avoid' | 'prohibit';

/** A property value: a preference or enumeration value, a boolean, a whole
 * number (durations in milliseconds) or `null` (a Disabled / infinite duration). */
export type PropertyValue = Preference | string | boolean | number | null;

/** A RemoteEndpoint (RFC 9622 §6.1): `host` (the browser resolves the name) or `ip`. */
export interface RemoteEndpointOptions {
  host?: string;
  ip?: string;
  port?: number;
  service?: string;
}

/** Selection, Connection and default Message Properties by RFC name. */
export interface TransportPropertiesOptions {
  reliability?: Preference;
  preserveMsgBoundaries?: Preference;
  perMsgReliability?: Preference;
  preserveOrder?: Preference;
  zeroRttMsg?: Preference;
  multistreaming?: Preference;
  fullChecksumSend?: Preference;
  fullChecksumRecv?: Preference;
  congestionControl?: Preference;
  keepAlive?: Preference;
  useTemporaryLocalAddress?: Preference;
  softErrorNotify?: Preference;
  activeReadBeforeSend?: Preference;
  /** A local interface (or provisioning domain) by name, with a preference. */
  interface?: string;
  pvd?: string;
  multipath?: 'disabled' | 'active' | 'passive';
  advertisesAltaddr?: boolean;
  direction?: 'bidirectional' | 'unidirectionalSend' | 'unidirectionalReceive';
  // Connection Properties (RFC 9622 §8.1): durations in milliseconds, or null for none.
  /** Milliseconds, or null for none. */
  connTimeout?: number | null;
  keepAliveTimeout?: number | null;
  connPriority?: number;
  connScheduler?: string;
  connCapacityProfile?: string;
  multipathPolicy?: 'handover' | 'interactive' | 'aggregate';
  recvChecksumLen?: number | 'fullCoverage';
  minSendRate?: number | 'unlimited';
  minRecvRate?: number | 'unlimited';
  maxSendRate?: number | 'unlimited';
  maxRecvRate?: number | 'unlimited';
  groupConnLimit?: number | 'unlimited';
  isolateSession?: boolean;
  recvMsgMaxLen?: number | 'default';
  sendMsgMaxLen?: number | 'default';
  'tcp.userTimeoutValue'?: number | null;
  'tcp.userTimeoutEnabled'?: boolean;
  'tcp.userTimeoutChangeable'?: boolean;
  // Default Message Properties (RFC 9622 §9.1.3).
  msgLifetime?: number | null;
  msgPriority?: number;
  msgOrdered?: boolean;
  safelyReplayable?: boolean;
  final?: boolean;
  msgChecksumLen?: number | 'fullCoverage';
  msgReliable?: boolean;
  msgCapacityProfile?: string;
  noFragmentation?: boolean;
  noSegmentation?: boolean;
}

/** SecurityParameters (RFC 9622 §6.3). Without any, security is required. */
export interface SecurityOptions {
  /** Plaintext only (`ws`). */
  disabled?: boolean;
  /** Secure stacks first, plaintext allowed. */
  opportunistic?: boolean;
  /** SHA-256 of the server's leaf certificate (DER), hex. */
  pinnedServerCertificate?: string[];
  /** Refused in the browser (it negotiates ALPN itself): initiate() rejects with InvalidConfiguration. */
  alpn?: string[];
  /** Refused in the browser (it uses the URL's host name). */
  serverName?: string;
  /** Refused in the browser (it chooses the TLS version). */
  allowedSecurityProtocols?: string[];
  /** Refused in the browser (a page cannot add trusted roots). */
  trustedCA?: string[];
  /** Refused in the browser (it keeps its own session cache). */
  maxCachedSessions?: number;
  /** Refused in the browser (it keeps its own session cache). */
  cachedSessionLifetimeSeconds?: number;
  /** Refused in the browser (a page cannot listen). */
  requireClientCertificate?: boolean;
}

/** The stacks a browser can race. */
export type Protocol = 'ws' | 'wss' | 'wt' | 'webrtc';

/** What `new Preconnection()` takes. Unknown names or wrong values throw. */
export interface PreconnectionOptions {
  remote: RemoteEndpointOptions | RemoteEndpointOptions[];
  properties?: TransportPropertiesOptions;
  /** Restrict the stacks raced, in this order of preference. */
  protocols?: Protocol[];
  security?: SecurityOptions;
  /** Protocol-specific options, e.g. `{ 'ws.path': '/echo' }`. */
  protocolOptions?: Record<string, string>;
  /**
   * The Connection Attempt Delay (RFC 8305) in ms, used as is. Without it the delay after an
   * attempt follows that stack's remembered handshake time to that address (see
   * `transportContext`), and is 250 ms where none is known.
   */
  connectionAttemptDelay?: number;
  /**
   * Save the page's `transportContext` to `localStorage` after each race: `true` under
   * `CONTEXT_STORAGE_KEY`, or under the key given. A failure to save is a `contextError` event.
   */
  saveContext?: boolean | string;
  /**
   * A Message Framer (RFC 9622 §9.1.2) on every stack: `'lengthPrefix'` (a 4-byte big-endian
   * length before each Message) or `'line'` (Messages end with `\n`). Without one,
   * `preserveMsgBoundaries: 'require'` frames WebTransport streams with a length prefix and
   * leaves WebSocket and data-channel Messages as they are.
   */
  framer?: 'lengthPrefix' | 'line';
}

/** One step of the race (the RacingTrace schema, same as `tapscat --trace`). */
export interface TraceEvent {
  /** Milliseconds since `initiate()` started. */
  t_ms: number;
  event:
    | 'candidate'
    | 'attempt_started'
    | 'attempt_succeeded'
    | 'attempt_failed'
    | 'attempt_cancelled'
    | 'won'
    | 'establishment_error'
    /** History moved this candidate earlier or later (`reason` says what was remembered). */
    | 'reordered'
    /** History holds this candidate back: it starts only if everything else fails. */
    | 'held_back'
    /** The delay after this attempt came from its remembered handshake time. */
    | 'attempt_delay'
    /** A verdict of the context is set aside this once, to see if it still holds. */
    | 'probe';
  /** Dotted candidate id (`1.2`); `0` is the establishment as a whole. */
  id: string;
  parent?: string;
  branch?: 'path' | 'protocol' | 'endpoint';
  stack?: string;
  address?: string;
  host?: string;
  path?: string;
  reason?: string;
}

/** One candidate's failure in an EstablishmentError. */
export interface CandidateFailure {
  id: string;
  stack: string | null;
  address: string | null;
  reason: string;
  message: string;
}

/** Every error postsocket throws or rejects with (but an AbortSignal's own
 * reason, and a TypeError for a value of the wrong kind): `name` is the RFC
 * event (`EstablishmentError`, `SendError`, `Expired`, `ReceiveError`,
 * `ConnectionError`, `CloneError`, `InvalidConfiguration`,
 * `InvalidMessageProperties`). `e instanceof TransportError` tells them from
 * other errors. */
export class TransportError extends Error {
  constructor(
    message: string,
    options?: { name?: string; reason?: string; candidates?: CandidateFailure[]; cause?: unknown },
  );
  /** The RFC 9623 reason (`EstablishmentFailed`, `InvalidConfiguration`, ...). */
  reason: string;
  /** For an EstablishmentError: why each candidate failed. */
  candidates: CandidateFailure[];
  /** The standard `cause`: for an error with failed candidates, the first
   * one as a TransportError named `CandidateFailure` (its `reason`, its text). */
  cause?: unknown;
}

/** Message Properties by RFC name (`msgLifetime` in ms, `final`, ...). */
export interface MessageProperties {
  msgLifetime?: number | null;
  msgPriority?: number;
  msgOrdered?: boolean;
  safelyReplayable?: boolean;
  final?: boolean;
  msgReliable?: boolean;
  msgChecksumLen?: number | 'fullCoverage';
  msgCapacityProfile?: string;
  noFragmentation?: boolean;
  noSegmentation?: boolean;
}

/** The outcome of a successful `send`. */
export interface Sent {
  /** Position of this send among all sends on the Connection (from 0). */
  sequence: number;
}

/** A received Message (`Received` or `ReceivedPartial`). */
export interface ReceivedMessage {
  data: Uint8Array;
  /** True for a whole Message or the last part of one. */
  endOfMessage: boolean;
  /** True for `ReceivedPartial`. */
  partial: boolean;
  messageContext: { id: number; final: boolean; earlyData: boolean };
}

export interface PreconnectionEventMap {
  trace: CustomEvent<TraceEvent>;
  /** `saveContext` could not save (e.g. localStorage disabled or full). */
  contextError: CustomEvent<TransportError>;
}

/**
 * The network path changed (`what` says how): every open Connection gets a `pathChange` event
 * whose `detail` is `what`, and `transportContext` forgets the old network. Returns how many
 * Connections were told. Done by postsocket on the browser's `online`, `offline` and
 * `navigator.connection` `change` events unless `watchPlatformPaths(false)`.
 */
export function pathChanged(what: string): number;

/** Whether the browser's network events are path changes (`true` by default). */
export function watchPlatformPaths(on: boolean): void;

/** The `localStorage` key `transportContext` saves under by default: `'postsocket.transportContext'`. */
export const CONTEXT_STORAGE_KEY: string;

/**
 * The page's TransportContext: what earlier races taught (addresses and stacks that worked or
 * failed, handshake times, blackholed IPv6 or UDP, the page's WebTransport budget), used by every
 * Preconnection of the page. Every decision it causes is a trace event with its reason.
 */
export const transportContext: {
  /** Save to `localStorage` under `key`; throws an `InvalidConfiguration` TransportError if storage refuses. */
  save(key?: string): void;
  /** Restore what `save` stored: `false` if nothing is; throws (and starts empty) on text it cannot read. */
  restore(key?: string): boolean;
  /** Forget everything learned. */
  forget(): void;
  /** The network changed: forget what was learned on it (done on the `online` event). */
  networkChanged(): void;
  /** The documented saved format, as an object. */
  toJSON(): unknown;
};

/** A Preconnection (RFC 9622 §6). Emits `trace` events while racing. */
export class Preconnection extends EventTarget {
  /** Throws a TransportError (`InvalidConfiguration`) saying what was wrong. */
  constructor(options: PreconnectionOptions);
  /** `Initiate()`: rejects with a TransportError named `EstablishmentError`. */
  /** With `signal`, aborting it ends the race and rejects with the signal's reason. */
  initiate(options?: { timeout?: number; signal?: AbortSignal }): Promise<Connection>;
  /** `InitiateWithSend()`: race with `data` as the first Message. Resolves
   * at Ready once that Message went to the stack; `sent` is its outcome
   * (settled already). Rejects as `initiate()` does, and with
   * `InvalidMessageProperties` for a bad property. */
  initiateWithSend(
    data: Uint8Array | ArrayBuffer | ArrayBufferView | string,
    messageProperties?: MessageProperties,
    options?: { signal?: AbortSignal },
  ): Promise<
    | { connection: Connection; sent: Sent; sendError: null }
    | { connection: Connection; sent: null; sendError: TransportError }
  >;
  /** `Rendezvous()` over WebRTC with HTTP signaling: the offer is POSTed to
   * `signalingUrl`, the answer read from the response. Needs
   * `protocols: ['webrtc']`. Rejects with a TransportError named `EstablishmentError`.
   * Aborting `signal` ends the Rendezvous and rejects with the signal's reason. */
  rendezvous(options: { signalingUrl: string; signal?: AbortSignal }): Promise<Connection>;
  addEventListener<K extends keyof PreconnectionEventMap>(
    type: K,
    listener: (this: Preconnection, ev: PreconnectionEventMap[K]) => unknown,
    options?: boolean | AddEventListenerOptions,
  ): void;
  addEventListener(
    type: string,
    listener: EventListenerOrEventListenerObject | null,
    options?: boolean | AddEventListenerOptions,
  ): void;
}

export interface ConnectionEventMap {
  closed: CustomEvent<null>;
  connectionError: CustomEvent<TransportError>;
  softError: CustomEvent<string>;
  pathChange: CustomEvent<string>;
  cloneError: CustomEvent<TransportError>;
}

/** A Connection (RFC 9622 §7). */
export class Connection extends EventTarget implements AsyncIterable<ReceivedMessage> {
  private constructor();
  readonly stack: string;
  readonly state: 'establishing' | 'established' | 'closing' | 'closed';
  readonly remoteAddress: string | undefined;
  readonly trace: TraceEvent[];
  send(
    data: Uint8Array | ArrayBuffer | ArrayBufferView | string,
    messageProperties?: MessageProperties,
    endOfMessage?: boolean,
  ): Promise<Sent>;
  /** With `signal`, aborting it rejects a receive still waiting with the signal's reason (nothing is lost). */
  receive(options?: { minIncompleteLength?: number; maxLength?: number; signal?: AbortSignal }): Promise<ReceivedMessage>;
  /** `Clone()`: a new Connection in this one's group, to the same remote;
   * `properties` change the clone's Connection Properties. Rejects with a
   * TransportError named `CloneError` (`InvalidConfiguration` for a bad
   * property). */
  clone(properties?: Record<string, PropertyValue>): Promise<Connection>;
  close(): Promise<void>;
  abort(): void;
  getProperty(name: string): PropertyValue;
  setProperty(name: string, value: PropertyValue): void;
  addEventListener<K extends keyof ConnectionEventMap>(
    type: K,
    listener: (this: Connection, ev: ConnectionEventMap[K]) => unknown,
    options?: boolean | AddEventListenerOptions,
  ): void;
  addEventListener(
    type: string,
    listener: EventListenerOrEventListenerObject | null,
    options?: boolean | AddEventListenerOptions,
  ): void;
  [Symbol.asyncIterator](): AsyncIterator<ReceivedMessage>;
}
