// The JS half of postsocket-web's bindings, one module: each module is one more fetch when
// the package loads. Module state belongs to one wasm instance (one per JS module, as
// wasm-bindgen's own glue assumes).

// The executor (executor.rs): a waiting task's Promise resolvers, at its slot.
const task_resolvers = [];
const task_rejecters = [];
export function pending_promise(id) {
  return new Promise((resolve, reject) => {
    task_resolvers[id] = resolve;
    task_rejecters[id] = reject;
  });
}
export function settle(id, ok, value) {
  const f = ok ? task_resolvers[id] : task_rejecters[id];
  task_resolvers[id] = undefined;
  task_rejecters[id] = undefined;
  f(value);
}
export function settled(ok, value) {
  return ok ? Promise.resolve(value) : Promise.reject(value);
}
export function queue_microtask(f) {
  queueMicrotask(f);
}

// Receiving and sending (connection.rs): a receive's resolvers wait in arrays index.js fills.
export function received_message(data, id, flags) {
  return {
    data,
    endOfMessage: (flags & 1) !== 0,
    partial: (flags & 2) !== 0,
    messageContext: { id, final: (flags & 4) !== 0, earlyData: (flags & 8) !== 0 },
  };
}
const resolvers = [];
const rejecters = [];
export function receive_resolvers() {
  return [resolvers, rejecters];
}
// A slot with no resolver (receiveStart called without making its Promise)
// is reported, not thrown: a throw would stop the executor's run.
function unclaimed(slot, outcome) {
  console.error(`postsocket: a receive finished with no Promise waiting at slot ${slot} (RawConnection.receiveStart is index.js's; use Connection.receive)`, outcome);
}
export function settle_received(slot, data, id, flags) {
  const f = resolvers[slot];
  resolvers[slot] = undefined;
  rejecters[slot] = undefined;
  const message = received_message(data, id, flags);
  if (f === undefined) unclaimed(slot, message);
  else f(message);
}
export function reject_receive(slot, error) {
  const f = rejecters[slot];
  resolvers[slot] = undefined;
  rejecters[slot] = undefined;
  if (f === undefined) unclaimed(slot, error);
  else f(error);
}
export function sent_message(sequence) {
  return { sequence };
}
export function sent_promise(sequence) {
  return Promise.resolve({ sequence });
}

// Preconnection (preconnection.rs).
export function initiated_with_send(connection, sent, sendError) {
  return { connection, sent, sendError };
}
