'use strict';
// W1/W2 of bench/run.py: PouchDB 9 (Node, memory adapter) replicating with a server.
//
//   node bench/replicate.js push --url http://127.0.0.1:5984 --db w1 --docs 10000
//   node bench/replicate.js pull --url http://127.0.0.1:5984 --db w1 --docs 10000
//
// push: builds a memory db of N docs of about 1 KB (the same docs as bench/workloads.py
// makes), then times PouchDB.replicate(local, remote) with PouchDB's default options.
// pull: times PouchDB.replicate(remote, local) into an empty memory db.
// Building the source db is not timed. Prints one JSON line:
// {"ok": true, "mode", "docs", "seconds", "docs_per_s", "docs_written"} (exit 0), or
// {"ok": false, "error"} (exit 1).

const crypto = require('crypto');
const PouchDB = require('pouchdb').plugin(require('pouchdb-adapter-memory'));

function parseArgs(argv) {
  const args = {mode: argv[0]};
  for (let i = 1; i < argv.length; i += 2) {
    args[argv[i].replace(/^--/, '')] = argv[i + 1];
  }
  if (!['push', 'pull'].includes(args.mode) || !args.url || !args.db || !args.docs) {
    throw new Error('usage: node replicate.js push|pull --url URL --db NAME --docs N');
  }
  return args;
}

// Same shape as bench/workloads.py make_doc(): about 1,000 bytes of JSON.
function makeDoc(i, prefix) {
  const h = crypto.createHash('md5').update(`${prefix}${i}`).digest('hex');
  return {_id: `${prefix}-${String(i).padStart(8, '0')}`, type: 'bench', n: i, text: Array(29).fill(h).join(' ')};
}

function remoteDb(url, db) {
  return new PouchDB(`${url.replace(/\/+$/, '')}/${encodeURIComponent(db)}`);
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const count = parseInt(args.docs, 10);
  const local = new PouchDB(`bench-${args.mode}-${process.pid}`, {adapter: 'memory'});
  const remote = remoteDb(args.url, args.db);
  let result;
  let seconds;
  if (args.mode === 'push') {
    for (let start = 0; start < count; start += 1000) {
      const docs = [];
      for (let i = start; i < Math.min(count, start + 1000); i++) {
        docs.push(makeDoc(i, 'doc'));
      }
      await local.bulkDocs(docs);
    }
    const t0 = process.hrtime.bigint();
    result = await PouchDB.replicate(local, remote);
    seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  } else {
    const t0 = process.hrtime.bigint();
    result = await PouchDB.replicate(remote, local);
    seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    const info = await local.info();
    if (info.doc_count !== count) {
      throw new Error(`pulled ${info.doc_count} docs, expected ${count}`);
    }
  }
  if (result.ok !== true || result.doc_write_failures !== 0 || result.docs_written !== count) {
    throw new Error(`replication incomplete: ${JSON.stringify(result)}`);
  }
  process.stdout.write(
    JSON.stringify({
      ok: true,
      mode: args.mode,
      docs: count,
      seconds,
      docs_per_s: count / seconds,
      docs_written: result.docs_written,
    }) + '\n',
  );
}

main().catch((err) => {
  process.stdout.write(JSON.stringify({ok: false, error: String((err && err.stack) || err)}) + '\n');
  process.exit(1);
});
