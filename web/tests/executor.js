// The JS side of tests/executor.rs, one module (each module is one more fetch when the test
// page loads).

// A binding's own settler: its resolvers wait in their own array, and settling builds the value
// in the same call.
const resolvers = [];
const rejecters = [];
export function pending_pair(slot) {
  return new Promise((resolve, reject) => {
    resolvers[slot] = resolve;
    rejecters[slot] = reject;
  });
}
export function settle_pair(slot, ok, n) {
  const f = ok ? resolvers[slot] : rejecters[slot];
  resolvers[slot] = undefined;
  rejecters[slot] = undefined;
  f(ok ? { n, doubled: 2 * n, waited: true } : `refused ${n}`);
}
export function settled_pair(ok, n) {
  return ok ? Promise.resolve({ n, doubled: 2 * n, waited: false }) : Promise.reject(`refused ${n}`);
}
export function field(o, name) {
  return o[name];
}

// A binding that makes its Promises itself (as the npm package's `receive` does): the resolve
// waits at the task's slot.
const started = [];
export function promise_at(slot) {
  return new Promise((resolve) => {
    started[slot] = resolve;
  });
}
export function settle_at(slot, n) {
  const f = started[slot];
  started[slot] = undefined;
  f(n);
}
