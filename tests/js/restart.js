'use strict';
// Extra scenario: live sync across a server restart. Clients A and B live-sync through
// the server; once they agree, the script prints `{"phase": "synced", ...}` and waits for
// one line on stdin while the test stops the server (SIGKILL, or SIGTERM) and starts it
// again on the same port and data dir. Then writes on A (and on the server) must reach B
// again (PouchDB's `retry: true` reconnects), nothing acknowledged before the stop may be
// lost, and a one-shot push of A afterwards must find nothing to write (the checkpoint and
// the server uuid survived the restart).

const readline = require('readline');

const {
  check,
  dbInfo,
  diffSnapshots,
  inflight,
  localDb,
  main,
  remoteDb,
  replicate,
  snapshot,
  summarize,
  waitFor,
} = require('./lib/common');
const {putDoc} = require('./lib/remote_edits');

function nextStdinLine() {
  return new Promise((resolve, reject) => {
    const rl = readline.createInterface({input: process.stdin});
    rl.once('line', (line) => {
      resolve(line); // before close(): close() emits 'close' synchronously
      rl.close();
    });
    rl.once('close', () => reject(new Error('stdin closed before the restart was confirmed')));
  });
}

function hasRev(db, id, rev) {
  return async () => {
    try {
      return (await db.get(id))._rev === rev;
    } catch (err) {
      return false;
    }
  };
}

main('restart', async ({url, db, timeout}) => {
  const deadline = timeout ? parseInt(timeout, 10) : 30000;
  const A = localDb('restart-a');
  const B = localDb('restart-b');
  await A.bulkDocs(Array.from({length: 100}, (_, i) => ({_id: `before-${String(i).padStart(3, '0')}`, i})));
  const errors = {A: [], B: []};
  const handlers = {
    A: A.sync(remoteDb(url, db), {live: true, retry: true}),
    B: B.sync(remoteDb(url, db), {live: true, retry: true}),
  };
  for (const name of ['A', 'B']) {
    handlers[name].on('error', (err) => errors[name].push(String((err && err.message) || err)));
  }
  await waitFor('100 docs A -> B', async () => (await B.allDocs()).rows.length === 100, {timeoutMs: deadline});
  const lastRev = (await A.put({_id: 'last-before-stop', text: 'acknowledged before the stop'})).rev;
  await waitFor('last doc A -> B', hasRev(B, 'last-before-stop', lastRev), {timeoutMs: deadline});
  const infoBefore = await dbInfo(url, db);
  // Both clients idle: each holds its long-polled _changes request open on the server
  // (what a graceful stop has to deal with).
  const idle = await waitFor('both clients holding a longpoll _changes', () => {
    const polls = [...inflight.open].filter((e) => e.endpoint === '_changes' && e.url.includes('feed=longpoll'));
    return polls.length >= 2;
  }, {timeoutMs: deadline});

  process.stdout.write(JSON.stringify({phase: 'synced', update_seq: infoBefore.update_seq, idle_ms: idle.ms}) + '\n');
  await nextStdinLine();
  const restarted = Date.now();

  const rev = (await A.put({_id: 'after-restart', text: 'written on A after the restart'})).rev;
  const recovered = await waitFor('A -> B after the restart', hasRev(B, 'after-restart', rev), {
    timeoutMs: deadline,
  });
  const serverRev = await putDoc(url, db, {_id: 'server-after-restart', text: 'PUT after the restart'});
  await waitFor('server -> A and B after the restart', async () => {
    return (await hasRev(A, 'server-after-restart', serverRev)()) && (await hasRev(B, 'server-after-restart', serverRev)());
  }, {timeoutMs: deadline});

  handlers.A.cancel();
  handlers.B.cancel();
  const [a, b, server] = await Promise.all([snapshot(A), snapshot(B), snapshot(remoteDb(url, db))]);
  const problems = [
    ...diffSnapshots(server, a, {expectedName: 'server', actualName: 'A'}),
    ...diffSnapshots(server, b, {expectedName: 'server', actualName: 'B'}),
  ];
  check(problems.length === 0, `clients and server differ after the restart (${problems.length})`, problems);
  check(errors.A.length === 0 && errors.B.length === 0, 'live sync gave up (error event)', errors);
  const again = await replicate(A, remoteDb(url, db));

  return {
    recovered_ms: recovered.ms,
    since_restart_ms: Date.now() - restarted,
    server_info_before: infoBefore,
    server_info: await dbInfo(url, db),
    push_again: again,
    docs: Object.keys(server).length,
    final: summarize(server),
  };
});
