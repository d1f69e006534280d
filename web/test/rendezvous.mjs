// The npm package's WebRTC Rendezvous with postsocket's native peer (webrtc-echo, str0m), in
// the browser BROWSER names (chromium or firefox): signaling over HTTP, Messages of several
// sizes echoed with their boundaries, a Clone (a second data channel), close.
//
// Run it inside a network namespace with only loopback and a veth with a default route (Firefox
// gathers no ICE candidate without a default route, and none on loopback), as scripts/test.sh
// does: POSTSOCKET_WEBRTC_SIGNALING=http://127.0.0.1:P/offer BROWSER=firefox node rendezvous.mjs
//
// Then an Abort: the page aborts a channel that is its peer connection's only one, and the native
// peer must see a failure, not a clean finish (RFC 9622 §10). WEBRTC_ECHO_LOG names the file
// webrtc-echo's stderr goes to: it says there how each channel ended, by its first Message.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { BROWSER, launch, serve } from './harness.mjs';

const signalingUrl = process.env.POSTSOCKET_WEBRTC_SIGNALING;
const echoLog = process.env.WEBRTC_ECHO_LOG;
if (!signalingUrl || !echoLog) {
  console.error('POSTSOCKET_WEBRTC_SIGNALING or WEBRTC_ECHO_LOG is not set: start webrtc-echo, pass its line and the file its stderr goes to');
  process.exit(2);
}
const server = await serve();
const browser = await launch();
let failed = false;
try {
  const { page } = browser;
  await page.goto(`${server.url}/example/index.html?port=1`);
  const r = await page.evaluate(async (signalingUrl) => {
    const m = await import('/pkg/index.js');
    await m.init();
    const t0 = performance.now();
    const within = (p, what) =>
      Promise.race([p, new Promise((_, no) => setTimeout(() => no(new Error(`${what}: nothing within 20 s`)), 20000))]);
    const pre = new m.Preconnection({ remote: { ip: '127.0.0.1', port: 1 }, protocols: ['webrtc'] });
    const conn = await within(pre.rendezvous({ signalingUrl }), 'rendezvous');
    const ready = performance.now() - t0;
    const sizes = [];
    for (const n of [1, 1000, 100000]) {
      const data = new Uint8Array(n).map((_, i) => i % 251);
      await conn.send(data);
      const back = (await within(conn.receive(), `the echo of ${n} bytes`)).data;
      sizes.push(back.length === n && back.every((b, i) => b === i % 251) ? n : `${n} came back as ${back.length}`);
    }
    const twin = await within(conn.clone(), 'clone');
    await twin.send('on the clone');
    const cloneEcho = new TextDecoder().decode((await within(twin.receive(), 'the clone\'s echo')).data);
    await twin.close();
    await conn.close();
    return { stack: conn.stack, sizes, cloneEcho, ready: Math.round(ready) };
  }, signalingUrl);
  assert.equal(r.stack, 'webrtc');
  assert.deepEqual(r.sizes, [1, 1000, 100000]);
  assert.equal(r.cloneEcho, 'on the clone');
  console.log(`ok   ${BROWSER}: a data channel with the native peer in ${r.ready} ms; 1 B, 1 KB and 100 KB Messages echoed whole; a Clone echoed`);

  // Abort: the native peer reads it as a failure, not as a clean finish.
  const tag = `abort test ${BROWSER} ${Date.now()}`;
  await page.evaluate(async ({ signalingUrl, tag }) => {
    const m = await import('/pkg/index.js');
    const within = (p, what) =>
      Promise.race([p, new Promise((_, no) => setTimeout(() => no(new Error(`${what}: nothing within 20 s`)), 20000))]);
    const pre = new m.Preconnection({ remote: { ip: '127.0.0.1', port: 1 }, protocols: ['webrtc'] });
    const conn = await within(pre.rendezvous({ signalingUrl }), 'rendezvous');
    await conn.send(tag);
    await within(conn.receive(), 'the echo before the abort');
    conn.abort();
  }, { signalingUrl, tag });
  let ended;
  for (let i = 0; i < 400 && !ended; i++) {
    ended = readFileSync(echoLog, 'utf8').split('\n').find((l) => l.includes(JSON.stringify(tag)));
    if (!ended) await new Promise((ok) => setTimeout(ok, 100));
  }
  assert.ok(ended, `webrtc-echo said nothing of the aborted channel's end within 40 s (${echoLog})`);
  const why = ended.replace(/^.*echoed\): /, '');
  if (BROWSER === 'firefox') {
    // Firefox's RTCPeerConnection.close() resets each data channel before it ends the association,
    // so the peer reads the Abort as the channel's clean close; a page has no other way to end it.
    // The README says so. This pins it: if it fails, Firefox changed, and the README must too.
    assert.ok(why.startsWith('PeerFinished'), `Firefox's Abort no longer reads as a clean close: ${why} (update the README)`);
    console.log(`ok   ${BROWSER}: an Abort reads as a clean close to the native peer, as the README says (${why})`);
  } else {
    // The association's abort: a failure of the peer connection, not the channel's clean close.
    assert.match(why, /^ProtocolFailed: .*the peer closed the WebRTC peer connection/, `the native peer did not read the Abort as the peer connection's failure: ${ended}`);
    console.log(`ok   ${BROWSER}: an Abort is a failure to the native peer (${why})`);
  }
} catch (e) {
  failed = true;
  console.log(`FAIL ${BROWSER}: ${String(e.stack ?? e)}`);
} finally {
  await browser.close();
  await server.close();
}
process.exit(failed ? 1 : 0);
