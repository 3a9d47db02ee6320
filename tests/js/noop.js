'use strict';
// Scenario (e) no-op replications: replicating data the target already has must write
// nothing and must not change the server's update_seq.
//   push twice (same replication: the checkpoint makes the 2nd read nothing)
//   pull twice into a fresh db (same for pull; the pull checkpoints on the server are
//     _local docs, which must not move update_seq)
//   push from another db holding the same revisions (new replication id, no checkpoint:
//     only _revs_diff keeps it from writing)
//   pull into the original source (new replication id, everything already there)
//   sync twice

const {check, dbInfo, localDb, main, remoteDb, replicate, snapshot, sync} = require('./lib/common');
const {buildDataset} = require('./lib/dataset');

main('noop', async ({url, db, count}) => {
  const source = localDb('noop-source');
  const dataset = await buildDataset(source, {count: count ? parseInt(count, 10) : 1000});
  const remote = remoteDb(url, db);
  const seq = async () => (await dbInfo(url, db)).update_seq;
  const steps = {};
  const seqs = {};

  steps.push_1 = await replicate(source, remote);
  seqs.after_push_1 = await seq();
  steps.push_2 = await replicate(source, remote);
  seqs.after_push_2 = await seq();

  const fresh = localDb('noop-pulled');
  steps.pull_1 = await replicate(remote, fresh);
  seqs.after_pull_1 = await seq();
  steps.pull_2 = await replicate(remote, fresh);
  seqs.after_pull_2 = await seq();

  // A third db with exactly the same revisions, copied locally (never talked to the server).
  const twin = localDb('noop-twin');
  steps.local_copy = await replicate(source, twin);
  steps.push_from_twin = await replicate(twin, remote);
  seqs.after_push_from_twin = await seq();
  steps.pull_into_source = await replicate(remote, source);
  seqs.after_pull_into_source = await seq();

  const sync1 = await sync(source, remote);
  const sync2 = await sync(source, remote);
  steps.sync_1_push = sync1.push;
  steps.sync_1_pull = sync1.pull;
  steps.sync_2_push = sync2.push;
  steps.sync_2_pull = sync2.pull;
  seqs.after_sync = await seq();

  for (const [name, r] of Object.entries(steps)) {
    check(r.ok === true && r.status === 'complete' && r.doc_write_failures === 0, `${name} failed`, r);
  }
  const docs = dataset.ids.length;
  check(steps.push_1.docs_written === docs, `first push wrote ${steps.push_1.docs_written}, not ${docs}`);
  check(steps.pull_1.docs_written === docs, `first pull wrote ${steps.pull_1.docs_written}, not ${docs}`);
  const noops = Object.keys(steps).filter((k) => !['push_1', 'pull_1', 'local_copy'].includes(k));
  for (const name of noops) {
    check(steps[name].docs_written === 0, `${name} wrote ${steps[name].docs_written} docs, expected 0`, steps[name]);
  }
  const distinct = new Set(Object.values(seqs).map((s) => JSON.stringify(s)));
  check(distinct.size === 1, `update_seq moved during no-op replications: ${JSON.stringify(seqs)}`, seqs);

  const pulled = await snapshot(fresh);
  return {
    docs,
    steps,
    seqs,
    pulled_docs: Object.keys(pulled).length,
    server_info: await dbInfo(url, db),
  };
});
