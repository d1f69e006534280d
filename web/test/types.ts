// Compile-only check of the package's TypeScript types (tsc --noEmit --strict):
// what a TS consumer writes must type-check, and misuse must not.
import { init, Preconnection, Connection, TraceEvent, TransportError, ReceivedMessage, transportContext, CONTEXT_STORAGE_KEY, pathChanged, watchPlatformPaths } from '../pkg/index.js';

export async function consumer(port: number): Promise<string> {
  await init();
  const pre = new Preconnection({
    remote: { ip: '127.0.0.1', port },
    properties: { reliability: 'require', preserveMsgBoundaries: 'prefer', connTimeout: 5000 },
    protocols: ['wss', 'ws'],
    security: { disabled: true },
    protocolOptions: { 'ws.path': '/echo' },
  });
  const trace: TraceEvent[] = [];
  pre.addEventListener('trace', (e) => trace.push(e.detail));
  watchPlatformPaths(false);
  const told: number = pathChanged('the page moved to another network');
  watchPlatformPaths(told >= 0);
  const restored: boolean = transportContext.restore(CONTEXT_STORAGE_KEY);
  transportContext.save();
  if (!restored) transportContext.forget();
  const held: boolean = trace.some((e) => e.event === 'held_back');
  new Preconnection({ remote: { ip: '127.0.0.1', port }, saveContext: 'my-key' });
  // @ts-expect-error: saveContext is a boolean or a key
  new Preconnection({ remote: { ip: '127.0.0.1', port }, saveContext: 7 });
  let conn: Connection;
  try {
    conn = await pre.initiate({ timeout: 1000 });
  } catch (e) {
    const err = e as TransportError;
    return err.candidates.map((c) => `${c.id} ${c.address ?? ''}: ${c.message}`).join('\n');
  }
  conn.addEventListener('connectionError', (e) => console.log(e.detail.reason));
  conn.addEventListener('closed', () => console.log('closed'));
  const sent = await conn.send('hi', { msgLifetime: 1000, final: false });
  const n: number = sent.sequence;
  const msg: ReceivedMessage = await conn.receive({ maxLength: 1024 });
  const bytes: Uint8Array = msg.data;
  for await (const m of conn) {
    if (m.endOfMessage) break;
  }
  const twin: Connection = await conn.clone({ connPriority: 50 });
  const first = await pre.initiateWithSend('hello', { safelyReplayable: true });
  const connection: Connection = first.connection;
  const firstSequence: number = first.sent === null ? -1 : first.sent.sequence;
  const why: string | undefined = first.sendError?.reason;
  try {
    await pre.initiate();
  } catch (e) {
    if (e instanceof TransportError) console.log(e.reason, e.candidates.length);
  }
  await Promise.all([twin.close(), connection.close()]);
  const state: 'establishing' | 'established' | 'closing' | 'closed' = conn.state;
  await conn.close();
  // @ts-expect-error: a preference is one of the five RFC levels
  new Preconnection({ remote: { ip: '::1' }, properties: { reliability: 'sometimes' } });
  // @ts-expect-error: remote is required
  new Preconnection({});
  // @ts-expect-error: an unknown option name
  new Preconnection({ remote: { ip: '::1' }, colour: 'blue' });
  // @ts-expect-error: an unknown property name (a typo of reliability)
  new Preconnection({ remote: { ip: '::1' }, properties: { reliabilty: 'require' } });
  // @ts-expect-error: an unknown Message Property
  await conn.send('hi', { msgLifetme: 1000 });
  return `${n} ${bytes.length} ${state} ${trace.length} ${firstSequence} ${why}`;
}
