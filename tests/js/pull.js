'use strict';
// Scenario (b) pull: the server is filled with the data set of scenario (a) (pushed by
// PouchDB), then edited directly over HTTP so that it also holds conflicts (same-depth
// siblings, a longer branch, deleted conflict leaves, a live branch on a deleted doc),
// server-generated revisions (PUT/DELETE) and a server-only doc. An EMPTY memory db
// then pulls everything; every doc's winning rev, leaves (open_revs=all), _conflicts,
// bodies and histories must be the same on both sides.

const {
  QUIRKS,
  check,
  dbInfo,
  diffSnapshots,
  expectedWinner,
  localDb,
  main,
  remoteDb,
  replicate,
  same,
  snapshot,
  summarize,
} = require('./lib/common');
const {buildDataset} = require('./lib/dataset');
const {branch, deleteDoc, getDoc, putDoc, putRevisions} = require('./lib/remote_edits');

async function editServer(url, db, dataset, seedState) {
  // Histories come from the pushed db itself (the server must hold the same ones).
  const leaf = (id) => {
    const entry = seedState[id];
    return {_id: id, _rev: entry.rev, _revisions: entry.revs[entry.rev].revisions};
  };
  const live = (id) => !dataset.deleted.includes(id);
  const used = new Set();
  // `n` docs from `pool` not picked for any other edit.
  const take = (pool, n) => {
    const picked = pool.filter((id) => !used.has(id)).slice(0, n);
    picked.forEach((id) => used.add(id));
    return picked;
  };
  const special = ['été 😀', 'with/slash', '_design/app', 'percent%2Fnot-a-slash', 'plus+sign', '中文文档'];
  special.forEach((id) => used.add(id));
  const fresh = dataset.ids.filter((id) => id.startsWith('doc-') && live(id) && !dataset.updated.includes(id));
  // Docs with a history (rev >= 3), not deleted, not resurrected.
  const deep = dataset.updated.filter((id) => id.startsWith('doc-') && live(id) && !dataset.resurrected.includes(id));
  const edits = {sibling: [], longer: [], deleted_leaf: [], revived: [], put: [], deleted: [], created: []};
  const newRevs = [];

  // Same-depth sibling conflicts, including on special ids and the design doc.
  edits.sibling = ['été 😀', 'with/slash', '_design/app', 'percent%2Fnot-a-slash', ...take(fresh, 6), ...take(deep, 4)];
  for (const id of edits.sibling) {
    const doc = leaf(id);
    if (doc._revisions.ids.length > 1) {
      newRevs.push(branch(doc, {fork: 1, length: 1, body: {conflict: 'sibling', of: id}, seed: 's'}));
    } else {
      // A rev-1 doc: the sibling is another root (same id created on two peers).
      newRevs.push({_id: id, _rev: `1-${'f'.repeat(32)}`, _revisions: {start: 1, ids: ['f'.repeat(32)]}, conflict: 'root'});
    }
  }
  // A longer branch from further down: it becomes the winner.
  edits.longer = take(deep, 5);
  for (const id of edits.longer) {
    newRevs.push(branch(leaf(id), {fork: 2, length: 4, body: {conflict: 'longer'}, seed: 'l'}));
  }
  // Deleted conflict leaves: leaves count grows, _conflicts does not.
  edits.deleted_leaf = take(deep, 5);
  for (const id of edits.deleted_leaf) {
    newRevs.push(branch(leaf(id), {fork: 1, length: 1, deleted: true, seed: 'd'}));
  }
  // A live branch on deleted docs (forking below the tombstone): the doc comes back.
  edits.revived = take(dataset.deleted.filter((id) => id.startsWith('doc-')), 3);
  for (const id of edits.revived) {
    const tomb = leaf(id);
    newRevs.push(branch(tomb, {fork: 1, length: 2, body: {conflict: 'revived'}, seed: 'r'}));
  }
  await putRevisions(url, db, newRevs);

  // Interactive edits: server-generated revisions.
  edits.put = ['plus+sign', '中文文档', ...take(deep, 1)];
  for (const id of edits.put) {
    const doc = await getDoc(url, db, id);
    await putDoc(url, db, {...doc, edited_on_server: true, note: 'ünïcødé ✓'});
  }
  edits.deleted = [...take(fresh, 1), ...take(deep, 1), 'question?x=1&y=2'];
  for (const id of edits.deleted) {
    const doc = await getDoc(url, db, id);
    await deleteDoc(url, db, id, doc._rev);
  }
  edits.created = ['server only/新しい doc+1%'];
  await putDoc(url, db, {_id: edits.created[0], made: 'on the server'});
  return edits;
}

function normalizeOpenRevs(results) {
  return results
    .map((r) => {
      if (!r.ok) {
        return {missing: r.missing};
      }
      const {_revisions, _rev, _deleted} = r.ok;
      const body = {...r.ok};
      for (const k of ['_id', '_rev', '_revisions', '_deleted']) {
        delete body[k];
      }
      return {rev: _rev, deleted: _deleted === true, revisions: _revisions, body};
    })
    .sort((a, b) => (a.rev < b.rev ? -1 : a.rev > b.rev ? 1 : 0));
}

async function fetchOrError(promise) {
  try {
    return await promise;
  } catch (err) {
    // CouchDB: 404 {"error":"not_found","reason":"deleted"} for a deleted doc, "missing" for
    // one that never existed. (pouchdb-server always says "missing".)
    return {error: err.name || err.error, status: err.status, reason: QUIRKS ? '-' : err.reason || err.message};
  }
}

// Per-doc reads through the PouchDB API: open_revs=all and conflicts=true.
async function compareDocByDoc(local, remote, ids) {
  const problems = [];
  let index = 0;
  async function worker() {
    while (index < ids.length) {
      const id = ids[index++];
      const [lo, ro] = await Promise.all([
        fetchOrError(local.get(id, {open_revs: 'all', revs: true})),
        fetchOrError(remote.get(id, {open_revs: 'all', revs: true})),
      ]);
      const [lc, rc] = await Promise.all([
        fetchOrError(local.get(id, {conflicts: true})),
        fetchOrError(remote.get(id, {conflicts: true})),
      ]);
      const openLocal = Array.isArray(lo) ? normalizeOpenRevs(lo) : lo;
      const openRemote = Array.isArray(ro) ? normalizeOpenRevs(ro) : ro;
      if (!same(openLocal, openRemote)) {
        problems.push(`${JSON.stringify(id)} open_revs=all: local=${JSON.stringify(openLocal)} server=${JSON.stringify(openRemote)}`);
      }
      for (const c of [lc, rc]) {
        if (Array.isArray(c._conflicts)) {
          c._conflicts.sort();
        }
      }
      if (!same(lc, rc)) {
        problems.push(`${JSON.stringify(id)} conflicts=true: local=${JSON.stringify(lc)} server=${JSON.stringify(rc)}`);
      }
    }
  }
  await Promise.all(Array.from({length: 8}, worker));
  return problems;
}

main('pull', async ({url, db, count}) => {
  // 1. Fill the server as in scenario (a).
  const source = localDb('pull-seed');
  const dataset = await buildDataset(source, {count: count ? parseInt(count, 10) : 1000});
  const seedState = await snapshot(source);
  const remote = remoteDb(url, db);
  const seeding = await replicate(source, remote);
  check(seeding.ok && seeding.docs_written === dataset.ids.length, 'seeding push failed', seeding);

  // 2. Conflicts and server-side edits.
  const edits = await editServer(url, db, dataset, seedState);
  const expected = await snapshot(remote);
  for (const [id, entry] of Object.entries(expected)) {
    check(entry.rev === expectedWinner(entry), `server picked ${entry.rev} as winner of ${id}`, entry);
  }
  const leaves = Object.values(expected).reduce((n, e) => n + e.leaves.length, 0);
  const conflicted = Object.keys(expected).filter((id) => expected[id].leaves.length > 1);

  // 3. Pull into an empty db.
  const local = localDb('pull-target');
  const replication = await replicate(remote, local);
  check(replication.ok === true && replication.status === 'complete', 'replication did not complete', replication);
  check(replication.doc_write_failures === 0, 'write failures', replication.errors);
  check(replication.docs_written === leaves, `docs_written ${replication.docs_written} != ${leaves} leaves`, replication);

  // 4. Compare: whole-db snapshot, then doc by doc through open_revs / conflicts.
  const actual = await snapshot(local);
  const problems = diffSnapshots(expected, actual, {expectedName: 'server', actualName: 'local'});
  check(problems.length === 0, `pulled db differs from the server in ${problems.length} places`, problems);
  const perDoc = await compareDocByDoc(local, remote, Object.keys(expected).sort());
  check(perDoc.length === 0, `open_revs/conflicts reads differ for ${perDoc.length} docs`, perDoc.slice(0, 20));

  return {
    docs: Object.keys(expected).length,
    leaves,
    conflicted: conflicted.sort(),
    edits,
    seeding,
    replication,
    server_info: await dbInfo(url, db),
    local_info: await local.info(),
    expected: summarize(expected),
    pulled: summarize(actual),
  };
});
