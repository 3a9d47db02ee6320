'use strict';
// Scenario (a) push: a local memory db holding the 1,000-doc data set (special ids,
// a design doc, docs at rev 3..5, tombstones, resurrected docs, a _local doc) is
// replicated to the server with PouchDB.replicate(local, remote). The server's
// state, read back through PouchDB's HTTP adapter, must equal the local state
// doc for doc: winning rev, deleted flag, leaves, each leaf's body and history.

const {check, dbInfo, diffSnapshots, http, localDb, main, remoteDb, replicate, snapshot, summarize} = require(
  './lib/common',
);
const {buildDataset} = require('./lib/dataset');

main('push', async ({url, db, count}) => {
  const local = localDb('push-source');
  const dataset = await buildDataset(local, {count: count ? parseInt(count, 10) : 1000});
  const expected = await snapshot(local);
  const leaves = Object.values(expected).reduce((n, e) => n + e.leaves.length, 0);
  check(Object.keys(expected).length === dataset.ids.length, 'local data set is incomplete');

  const remote = remoteDb(url, db);
  const replication = await replicate(local, remote);
  check(replication.ok === true && replication.status === 'complete', 'replication did not complete', replication);
  check(replication.doc_write_failures === 0, 'write failures', replication.errors);
  check(
    replication.docs_written === dataset.ids.length,
    `docs_written ${replication.docs_written} != ${dataset.ids.length} docs`,
    replication,
  );

  const actual = await snapshot(remote);
  const problems = diffSnapshots(expected, actual, {expectedName: 'local', actualName: 'server'});
  check(problems.length === 0, `server differs from the pushed db in ${problems.length} places`, problems);

  const localDoc = await http('GET', `${url}/${encodeURIComponent(db)}/_local/not-replicated`);
  check(localDoc.status === 404, `_local doc was replicated (GET answered ${localDoc.status})`, localDoc.json);

  return {
    docs: dataset.ids.length,
    leaves,
    replication,
    server_info: await dbInfo(url, db),
    dataset: {
      special: dataset.special,
      updated: dataset.updated.length,
      deleted: dataset.deleted,
      resurrected: dataset.resurrected,
    },
    expected: summarize(expected),
  };
});
