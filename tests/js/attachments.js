'use strict';
// Scenario: binary and text attachments pushed and pulled by PouchDB 9 through the server,
// and a second client that fetches only the attachment bodies that changed.
//
//  1. Client A (memory db) creates docs with attachments: 1 KB, 1 MB and SIZE_BIG (default
//     50 MB) of random bytes, a compressible text attachment (the server stores it gzip)
//     whose name has "/", "+" and a space, and a doc with two attachments.
//  2. A pushes (PouchDB sends every attachment inline, base64, in _bulk_docs); every
//     attachment read back from the server with PouchDB's getAttachment must have the
//     SHA-256 of what A stored.
//  3. Client B (an empty memory db) pulls; its copies must have the same SHA-256.
//  4. A changes the body only of `bin-1k` and `bin-big`, replaces the attachment of
//     `bin-1m` and one of the two attachments of `multi`, and pushes.
//  5. B pulls again. B must end with A's bytes, and the request log of that pull must show
//     an attachment GET for the two changed attachments only (PouchDB re-uses the local
//     copy of an attachment whose digest did not change).
//
// Every HTTP request PouchDB makes to the server is recorded (method, path and query,
// status, phase) by a counting fetch that never buffers bodies; the result lists them per
// phase, so the Python test can prove which attachment bodies travelled.
//
// Options: --big-mb N (size of the big attachment, default 50).

const crypto = require('crypto');

const {PouchDB, check, localDb, main, replicate} = require('./lib/common');

const TEXT_NAME = 'dir/notes+1 v.txt';

let phase = 'setup';
let phaseStarted = Date.now();
const phaseMs = {};
const requests = [];

// Starts phase `name`; the time each phase took goes to the result's `phase_ms`.
function setPhase(name) {
  phaseMs[phase] = Date.now() - phaseStarted;
  phase = name;
  phaseStarted = Date.now();
}

// PouchDB's fetch, recording each request without reading any body.
function countingFetch(url, options = {}) {
  const entry = {phase, method: options.method || 'GET', url: new URL(url).pathname + new URL(url).search};
  if (typeof options.body === 'string') {
    entry.request_bytes = Buffer.byteLength(options.body);
  }
  requests.push(entry);
  return PouchDB.fetch(url, options).then(
    (response) => {
      entry.status = response.status;
      const length = response.headers.get('content-length');
      if (length !== null) {
        entry.response_bytes = parseInt(length, 10);
      }
      return response;
    },
    (err) => {
      entry.error = String(err && err.message);
      throw err;
    },
  );
}

function sha256(buffer) {
  return crypto.createHash('sha256').update(buffer).digest('hex');
}

// Compressible text: numbered lines with some non-ASCII, about `size` bytes of UTF-8.
function textBytes(size, salt) {
  const lines = [];
  let total = 0;
  for (let i = 0; total < size; i++) {
    const line = `${salt} line ${i}: the quick brown fox jumps over the lazy dog — ünïcødé ✓\n`;
    lines.push(line);
    total += Buffer.byteLength(line);
  }
  return Buffer.from(lines.join(''), 'utf8');
}

function attachment(contentType, data) {
  return {content_type: contentType, data};
}

// {docId: {attName: sha256}} of what `db` holds, read with getAttachment.
async function hashes(db, expected) {
  const out = {};
  for (const [id, atts] of Object.entries(expected)) {
    out[id] = {};
    for (const name of Object.keys(atts)) {
      const data = await db.getAttachment(id, name);
      check(Buffer.isBuffer(data), `getAttachment(${id}, ${name}) did not return a Buffer`);
      out[id][name] = sha256(data);
    }
  }
  return out;
}

function compare(expected, actual, where) {
  const problems = [];
  for (const [id, atts] of Object.entries(expected)) {
    for (const [name, digest] of Object.entries(atts)) {
      const got = actual[id] && actual[id][name];
      if (got !== digest) {
        problems.push(`${id}/${name}: expected sha256 ${digest}, ${where} has ${got}`);
      }
    }
  }
  check(problems.length === 0, `attachment bytes differ on ${where}`, problems);
}

function expectedOf(docs) {
  const out = {};
  for (const doc of docs) {
    out[doc._id] = {};
    for (const [name, att] of Object.entries(doc._attachments)) {
      out[doc._id][name] = sha256(att.data);
    }
  }
  return out;
}

function attachmentGets(phaseName, db) {
  const prefix = `/${encodeURIComponent(db)}/`;
  return requests
    .filter((r) => r.phase === phaseName && r.method === 'GET' && r.url.startsWith(prefix))
    .map((r) => r.url)
    .filter((u) => {
      const rest = u.split('?')[0].slice(prefix.length);
      return rest.includes('/') && !rest.startsWith('_');
    });
}

function timed(label, timings, promise) {
  const started = Date.now();
  return promise.then((value) => {
    timings[label] = Date.now() - started;
    return value;
  });
}

main('attachments', async ({url, db, 'big-mb': bigMb}) => {
  const big = Math.round((bigMb ? parseFloat(bigMb) : 50) * 1024 * 1024);
  const timings = {};
  const remote = new PouchDB(`${url}/${encodeURIComponent(db)}`, {fetch: countingFetch});
  const a = localDb('att-a');
  const b = localDb('att-b');

  // 1. Client A's documents.
  const docs = [
    {_id: 'bin-1k', v: 1, _attachments: {'data.bin': attachment('application/octet-stream', crypto.randomBytes(1024))}},
    {_id: 'bin-1m', v: 1, _attachments: {'data.bin': attachment('application/octet-stream', crypto.randomBytes(1 << 20))}},
    {_id: 'bin-big', v: 1, _attachments: {'data.bin': attachment('application/octet-stream', crypto.randomBytes(big))}},
    {_id: 'text', v: 1, _attachments: {[TEXT_NAME]: attachment('text/plain', textBytes(300 * 1024, 'A'))}},
    {
      _id: 'multi',
      v: 1,
      _attachments: {
        'keep.bin': attachment('image/png', crypto.randomBytes(64 * 1024)),
        'change.bin': attachment('application/octet-stream', crypto.randomBytes(64 * 1024)),
      },
    },
  ];
  const first = expectedOf(docs);
  for (const doc of docs) {
    await a.put(doc);
  }
  compare(first, await hashes(a, first), 'client A');

  // 2. Push, then read every attachment back from the server through PouchDB.
  setPhase('push1');
  const push1 = await timed('push1_ms', timings, replicate(a, remote));
  check(push1.ok && push1.docs_written === docs.length && push1.doc_write_failures === 0, 'push 1 failed', push1);
  setPhase('verify1');
  compare(first, await hashes(remote, first), 'the server');

  // 3. Client B pulls everything.
  setPhase('pull1');
  const pull1 = await timed('pull1_ms', timings, replicate(remote, b));
  check(pull1.ok && pull1.docs_written === docs.length && pull1.doc_write_failures === 0, 'pull 1 failed', pull1);
  setPhase('verify-b1');
  compare(first, await hashes(b, first), 'client B');

  // 4. A edits: bodies only (bin-1k, bin-big), one new attachment body (bin-1m), one of two (multi).
  setPhase('edit');
  const edits = {};
  for (const id of ['bin-1k', 'bin-big']) {
    const doc = await a.get(id);
    doc.v = 2;
    edits[id] = (await a.put(doc)).rev;
  }
  {
    const doc = await a.get('bin-1m');
    edits['bin-1m'] = (await a.putAttachment('bin-1m', 'data.bin', doc._rev, crypto.randomBytes(1 << 20), 'application/octet-stream')).rev;
  }
  {
    const doc = await a.get('multi');
    edits.multi = (await a.putAttachment('multi', 'change.bin', doc._rev, crypto.randomBytes(64 * 1024), 'application/octet-stream')).rev;
  }
  const second = await hashes(a, first);
  check(second['bin-1m']['data.bin'] !== first['bin-1m']['data.bin'], 'bin-1m did not change on A');
  check(second.multi['keep.bin'] === first.multi['keep.bin'], 'multi/keep.bin changed on A');

  setPhase('push2');
  const push2 = await timed('push2_ms', timings, replicate(a, remote));
  check(push2.ok && push2.docs_written === 4 && push2.doc_write_failures === 0, 'push 2 failed', push2);
  setPhase('verify2');
  compare(second, await hashes(remote, second), 'the server after push 2');

  // 5. B pulls the update.
  setPhase('pull2');
  const pull2 = await timed('pull2_ms', timings, replicate(remote, b));
  check(pull2.ok && pull2.docs_written === 4 && pull2.doc_write_failures === 0, 'pull 2 failed', pull2);
  setPhase('verify-b2');
  compare(second, await hashes(b, second), 'client B after pull 2');
  for (const [id, rev] of Object.entries(edits)) {
    const doc = await b.get(id);
    check(doc._rev === rev, `client B has ${id} at ${doc._rev}, A wrote ${rev}`);
  }

  setPhase('done');
  const texts = await a.get('text', {attachments: true, binary: true});
  return {
    big_bytes: big,
    first,
    second,
    edits,
    revs: Object.fromEntries(await Promise.all(docs.map(async (d) => [d._id, (await b.get(d._id))._rev]))),
    text_name: TEXT_NAME,
    text_length: texts._attachments[TEXT_NAME].data.length,
    replications: {push1, pull1, push2, pull2},
    attachment_gets: {pull1: attachmentGets('pull1', db), pull2: attachmentGets('pull2', db)},
    requests,
    timings,
    phase_ms: phaseMs,
  };
});
