'use strict';
// Scenario (d) live sync: clients A and B both run `db.sync(remote, {live: true, retry: true})`
// against the same server database. Writes on one client (create, update, delete, a burst
// of docs, a special id) and on the server itself (HTTP PUT) must show up on the other
// client(s) through the server, each within a deadline (polled, never slept). Finally both
// live syncs are cancelled; they must emit `complete`, leave no request open, and A, B
// and the server must hold identical data.

const {
  check,
  dbInfo,
  diffSnapshots,
  http,
  inflight,
  localDb,
  main,
  remoteDb,
  snapshot,
  summarize,
  waitFor,
} = require('./lib/common');
const {docUrl, putDoc} = require('./lib/remote_edits');

function watch(name, handler) {
  const log = {name, events: {}, errors: [], denied: [], completed: null};
  for (const ev of ['change', 'paused', 'active', 'denied', 'error', 'complete']) {
    handler.on(ev, (info) => {
      log.events[ev] = (log.events[ev] || 0) + 1;
      if (ev === 'error') {
        log.errors.push(String((info && (info.message || info.reason)) || info));
      } else if (ev === 'denied') {
        log.denied.push(info);
      } else if (ev === 'complete') {
        log.completed = {
          push: info && info.push ? info.push.status : undefined,
          pull: info && info.pull ? info.pull.status : undefined,
        };
      }
    });
  }
  return log;
}

// Resolves with the doc (or {deleted: true}) once `db` holds `rev` of `id`.
function hasRev(db, id, rev) {
  return async () => {
    try {
      const doc = await db.get(id);
      return doc._rev === rev ? doc : null;
    } catch (err) {
      if (err.status === 404 && rev === 'deleted' && err.reason === 'deleted') {
        return {deleted: true};
      }
      return null;
    }
  };
}

main('live', async ({url, db, timeout}) => {
  const deadline = timeout ? parseInt(timeout, 10) : 20000;
  const A = localDb('live-a');
  const B = localDb('live-b');
  await A.bulkDocs(Array.from({length: 10}, (_, i) => ({_id: `seed-${i}`, n: i})));

  const handlers = {
    A: A.sync(remoteDb(url, db), {live: true, retry: true}),
    B: B.sync(remoteDb(url, db), {live: true, retry: true}),
  };
  const logs = {A: watch('A', handlers.A), B: watch('B', handlers.B)};
  const latency = {};

  // 0. Seed docs written on A before the syncs started reach B.
  const seeded = await waitFor('seed docs A -> B', async () => (await B.allDocs()).rows.length === 10, {
    timeoutMs: deadline,
  });
  latency.seed_a_to_b = seeded.ms;

  // 1. Create on A -> B.
  let rev = (await A.put({_id: 'live-1', text: 'hello from A'})).rev;
  latency.create_a_to_b = (await waitFor('live-1 create A -> B', hasRev(B, 'live-1', rev), {timeoutMs: deadline})).ms;

  // 2. Update on B -> A.
  rev = (await B.put({...(await B.get('live-1')), text: 'edited on B'})).rev;
  latency.update_b_to_a = (await waitFor('live-1 update B -> A', hasRev(A, 'live-1', rev), {timeoutMs: deadline})).ms;

  // 3. Delete on A -> B.
  await A.remove(await A.get('live-1'));
  latency.delete_a_to_b = (await waitFor('live-1 delete A -> B', hasRev(B, 'live-1', 'deleted'), {timeoutMs: deadline})).ms;

  // 4. A special id created on B -> A.
  const special = 'live/été 😀+%20 中';
  rev = (await B.put({_id: special, text: 'special'})).rev;
  latency.special_b_to_a = (await waitFor('special id B -> A', hasRev(A, special, rev), {timeoutMs: deadline})).ms;

  // 5. A burst of 200 docs on A -> B.
  const burst = Array.from({length: 200}, (_, i) => ({_id: `burst-${String(i).padStart(3, '0')}`, i}));
  await A.bulkDocs(burst);
  latency.burst_a_to_b = (
    await waitFor(
      '200 burst docs A -> B',
      async () => (await B.allDocs({startkey: 'burst-', endkey: 'burst-\uffff'})).rows.length === 200,
      {timeoutMs: deadline},
    )
  ).ms;

  // 6. Written on the server over HTTP -> A and B.
  rev = await putDoc(url, db, {_id: 'from-server', text: 'PUT on the server'});
  const fromServer = await Promise.all([
    waitFor('server doc -> A', hasRev(A, 'from-server', rev), {timeoutMs: deadline}),
    waitFor('server doc -> B', hasRev(B, 'from-server', rev), {timeoutMs: deadline}),
  ]);
  latency.server_to_a = fromServer[0].ms;
  latency.server_to_b = fromServer[1].ms;

  // 7. Both clients idle and in sync: cancel both, wait for `complete` and for every open
  //    request (the long-polled _changes feeds) to end.
  const infoBeforeCancel = await dbInfo(url, db);
  handlers.A.cancel();
  handlers.B.cancel();
  const cancelled = await waitFor('complete after cancel', () => logs.A.completed && logs.B.completed, {
    timeoutMs: 5000,
  });
  const drained = await waitFor('no open requests after cancel', () => inflight.count === 0, {
    timeoutMs: 5000,
  }).catch((err) => {
    err.details = [...inflight.open].map((e) => `${e.method} ${e.url} status=${e.status}`);
    throw err;
  });

  check(logs.A.errors.length === 0 && logs.B.errors.length === 0, 'live sync emitted errors', logs);
  check(logs.A.denied.length === 0 && logs.B.denied.length === 0, 'live sync emitted denied', logs);

  const [a, b, server] = await Promise.all([snapshot(A), snapshot(B), snapshot(remoteDb(url, db))]);
  const problems = [
    ...diffSnapshots(server, a, {expectedName: 'server', actualName: 'A'}),
    ...diffSnapshots(server, b, {expectedName: 'server', actualName: 'B'}),
  ];
  check(problems.length === 0, `clients and server differ after live sync (${problems.length})`, problems);
  const {status} = await http('GET', docUrl(url, db, 'live-1'));

  return {
    deadline_ms: deadline,
    latency_ms: latency,
    cancel_ms: cancelled.ms,
    drain_ms: drained.ms,
    logs,
    live_1_status: status,
    docs: Object.keys(server).length,
    server_info_before_cancel: infoBeforeCancel,
    server_info: await dbInfo(url, db),
    final: summarize(server),
  };
});
