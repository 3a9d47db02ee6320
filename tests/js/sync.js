'use strict';
// Scenario (c) two-way sync with edits on both sides: clients A and B (memory dbs) share
// a base set of docs through the server, then edit concurrently (same doc edited on A,
// on B and on the server over HTTP; edit vs delete; delete vs delete; the same new id
// created on both clients; a doc updated twice on one side) and `db.sync(remote)` until
// nothing moves. A, B and the server must converge: same winning rev, same leaves, same
// _conflicts, same bodies for every doc. Then B resolves some conflicts (deletes the
// losing leaves), everything syncs again and converges to the resolved state.

const {
  check,
  dbInfo,
  diffSnapshots,
  expectedWinner,
  localDb,
  main,
  remoteDb,
  snapshot,
  summarize,
  sync,
} = require('./lib/common');
const {deleteDoc, getDoc, putDoc} = require('./lib/remote_edits');

const SPECIAL = ['été 😀', 'with/slash', 'plus+sign', '_design/app', '中文 キー', '100%25'];

async function update(db, id, changes) {
  const doc = await db.get(id);
  const res = await db.put({...doc, ...changes});
  return res.rev;
}

// Syncs A and B with the server until a round moves nothing (both directions, both
// clients). The first round runs both clients at the same time.
async function converge(A, B, remote, maxRounds = 6) {
  const rounds = [];
  for (let round = 1; round <= maxRounds; round++) {
    let results;
    if (round === 1) {
      results = await Promise.all([sync(A, remote), sync(B, remote)]);
    } else {
      results = [await sync(A, remote), await sync(B, remote)];
    }
    const written = results.reduce((n, r) => n + r.push.docs_written + r.pull.docs_written, 0);
    for (const r of results) {
      for (const side of [r.push, r.pull]) {
        check(side.ok && side.doc_write_failures === 0, `sync round ${round} failed`, r);
      }
    }
    rounds.push({A: results[0], B: results[1], written});
    if (written === 0) {
      return rounds;
    }
  }
  throw new Error(`no convergence after ${maxRounds} sync rounds: ${JSON.stringify(rounds)}`);
}

async function compareAll(A, B, remote) {
  const [a, b, server] = await Promise.all([snapshot(A), snapshot(B), snapshot(remote)]);
  const problems = [
    ...diffSnapshots(server, a, {expectedName: 'server', actualName: 'A'}),
    ...diffSnapshots(server, b, {expectedName: 'server', actualName: 'B'}),
  ];
  check(problems.length === 0, `clients and server did not converge (${problems.length} differences)`, problems);
  for (const [id, entry] of Object.entries(server)) {
    check(entry.rev === expectedWinner(entry), `winner of ${id} is ${entry.rev}, expected ${expectedWinner(entry)}`, entry);
  }
  return server;
}

main('sync', async ({url, db}) => {
  const remote = remoteDb(url, db);
  const A = localDb('sync-a');
  const B = localDb('sync-b');
  const revs = {A: {}, B: {}, server: {}};

  // 1. A shared base: A creates, both sync.
  const baseIds = [...Array.from({length: 20}, (_, i) => `base-${String(i).padStart(2, '0')}`), ...SPECIAL];
  await A.bulkDocs(baseIds.map((id, i) => ({_id: id, n: i, by: 'base'})));
  const setup = [await sync(A, remote), await sync(B, remote)];
  check(setup[0].push.docs_written === baseIds.length, 'A did not push the base docs', setup[0]);
  check(setup[1].pull.docs_written === baseIds.length, 'B did not pull the base docs', setup[1]);

  // 2. Concurrent edits.
  const bothEdit = ['base-00', 'été 😀', '_design/app', 'with/slash', '100%25'];
  for (const id of bothEdit) {
    revs.A[id] = await update(A, id, {by: 'A'});
    revs.B[id] = await update(B, id, {by: 'B', extra: [1, 2, 3]});
  }
  // A edits twice (rev 3), B once (rev 2): A's branch is longer and wins.
  await update(A, 'base-01', {by: 'A', step: 1});
  revs.A['base-01'] = await update(A, 'base-01', {by: 'A', step: 2});
  revs.B['base-01'] = await update(B, 'base-01', {by: 'B'});
  // Edit vs delete: the edit wins, the tombstone stays a deleted leaf.
  revs.A['base-02'] = (await A.remove(await A.get('base-02'))).rev;
  revs.B['base-02'] = await update(B, 'base-02', {by: 'B', survived: true});
  // Delete vs delete: the doc stays deleted with two deleted leaves. (B's tombstone has a
  // body; identical tombstones would get the same deterministic rev and not conflict.)
  revs.A['base-03'] = (await A.remove(await A.get('base-03'))).rev;
  revs.B['base-03'] = (await B.put({_id: 'base-03', _rev: (await B.get('base-03'))._rev, _deleted: true, by: 'B'})).rev;
  // Client vs server (HTTP PUT on the server).
  revs.A['base-04'] = await update(A, 'base-04', {by: 'A'});
  revs.server['base-04'] = await putDoc(url, db, {...(await getDoc(url, db, 'base-04')), by: 'server'});
  // Three-way: A, B and the server.
  revs.A['base-05'] = await update(A, 'base-05', {by: 'A'});
  revs.B['base-05'] = await update(B, 'base-05', {by: 'B'});
  revs.server['base-05'] = await putDoc(url, db, {...(await getDoc(url, db, 'base-05')), by: 'server'});
  // Deleted on the server only.
  revs.server['base-06'] = await deleteDoc(url, db, 'base-06', (await getDoc(url, db, 'base-06'))._rev);
  // Same new id created independently on both clients.
  revs.A['same-new'] = (await A.put({_id: 'same-new', by: 'A'})).rev;
  revs.B['same-new'] = (await B.put({_id: 'same-new', by: 'B', other: true})).rev;
  // Plain new docs everywhere.
  for (let i = 0; i < 5; i++) {
    await A.put({_id: `a-new-${i}`, by: 'A'});
    await B.put({_id: `b-new-${i}`, by: 'B'});
  }
  revs.server['server-new/ü'] = await putDoc(url, db, {_id: 'server-new/ü', by: 'server'});
  const infoBefore = await dbInfo(url, db);

  // 3. Sync until nothing moves, then compare everything.
  const rounds = await converge(A, B, remote);
  const converged = await compareAll(A, B, remote);

  // The expected shape of the conflicts.
  const shape = (id) => ({
    leaves: converged[id].leaves.length,
    conflicts: converged[id].conflicts.length,
    deleted: converged[id].deleted,
  });
  for (const id of bothEdit) {
    check(shape(id).leaves === 2 && shape(id).conflicts === 1, `${id} should have 2 live leaves`, converged[id]);
    check([revs.A[id], revs.B[id]].includes(converged[id].rev), `${id}: winner is neither A nor B`, converged[id]);
  }
  check(converged['base-01'].rev === revs.A['base-01'], 'base-01: the longer branch (A, rev 3) must win');
  check(converged['base-01'].conflicts[0] === revs.B['base-01'], 'base-01: B rev 2 must be the conflict');
  check(converged['base-02'].rev === revs.B['base-02'] && !converged['base-02'].deleted, 'base-02: edit beats delete');
  check(shape('base-02').leaves === 2 && shape('base-02').conflicts === 0, 'base-02: tombstone leaf expected');
  check(converged['base-03'].deleted && shape('base-03').leaves === 2, 'base-03: two tombstones expected');
  check(shape('base-04').leaves === 2 && shape('base-04').conflicts === 1, 'base-04: A vs server conflict expected');
  check(shape('base-05').leaves === 3 && shape('base-05').conflicts === 2, 'base-05: 3-way conflict expected');
  check(converged['base-06'].deleted && shape('base-06').leaves === 1, 'base-06: deleted on the server');
  check(shape('same-new').leaves === 2 && converged['same-new'].rev.startsWith('1-'), 'same-new: two roots');

  // 4. B resolves some conflicts by deleting the losing leaves; everything converges again.
  const resolved = ['base-00', 'base-05', 'same-new', 'été 😀'];
  for (const id of resolved) {
    for (const rev of converged[id].conflicts) {
      await B.remove(id, rev);
    }
  }
  const infoMid = await dbInfo(url, db);
  const resolveRounds = await converge(A, B, remote);
  const final = await compareAll(A, B, remote);
  for (const id of resolved) {
    check(final[id].conflicts.length === 0, `${id} still has conflicts after resolution`, final[id]);
    check(final[id].rev === converged[id].rev, `${id}: resolution changed the winner`, final[id]);
  }
  check(final['base-04'].conflicts.length === 1, 'base-04 was not resolved and must still conflict');

  return {
    docs: Object.keys(final).length,
    revs,
    setup,
    rounds,
    resolve_rounds: resolveRounds,
    resolved,
    server_info_before: infoBefore,
    server_info_mid: infoMid,
    server_info: await dbInfo(url, db),
    converged: summarize(converged),
    final: summarize(final),
  };
});
