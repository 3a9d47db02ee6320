'use strict';
// The deterministic 1,000-document data set the push/pull/no-op scenarios replicate.
//
// Ids exercise URL encoding (`/`, `+`, space, `%`, `?`, `#`, `:`, unicode incl.
// astral-plane emoji and CJK), a design doc; bodies exercise JSON (nesting,
// unicode, escapes, numbers); histories exercise updates (rev 3..5), deletions
// (plain tombstones and tombstones with a body) and resurrection (a doc
// re-created on top of its tombstone).

const SPECIAL_IDS = [
  'with/slash',
  'a/b/c/',
  '/leading-slash',
  'plus+sign',
  'with space',
  ' leading and trailing space ',
  'percent%',
  '100%25',
  'percent%2Fnot-a-slash',
  'colon:id',
  'urn:uuid:6e8bc430-9c3a-11d9-9669-0800200c9a66',
  'question?x=1&y=2',
  'hash#fragment',
  'semi;colon,comma=equals',
  'quote"double',
  "quote'single",
  'back\\slash',
  'été 😀',
  '中文文档',
  '日本語/キー',
  '한국어',
  'emoji 🎉🚀👩‍💻',
  'mixed /+% :é😀?#',
  '.dotfile',
  '-leading-dash',
  '_design/app',
  '_design/with/slash',
];

// Small deterministic PRNG (mulberry32).
function rng(seed) {
  let a = seed >>> 0;
  return function () {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function docIds(count) {
  const ids = [...SPECIAL_IDS];
  for (let i = 0; ids.length < count; i++) {
    ids.push(`doc-${String(i).padStart(4, '0')}`);
  }
  return ids;
}

function makeBody(id, index, version, random) {
  if (id.startsWith('_design/')) {
    return {
      language: 'javascript',
      version,
      views: {
        by_kind: {map: 'function (doc) { if (doc.kind) { emit(doc.kind, null); } }'},
        [`v${version}`]: {map: 'function (doc) { emit(doc._id, 1); }', reduce: '_sum'},
      },
      filters: {kinds: 'function (doc, req) { return doc.kind === req.query.kind; }'},
      validate_doc_update: 'function (newDoc, oldDoc, userCtx) {}',
    };
  }
  const body = {
    kind: ['alpha', 'beta', 'gamma'][index % 3],
    index,
    version,
    title: `document ${index} v${version}`,
    r: Math.floor(random() * 1e9),
  };
  switch (index % 6) {
    case 0:
      body.nested = {a: {b: {c: [1, 2, {d: 'deep'}]}}, empty_obj: {}, empty_arr: []};
      break;
    case 1:
      body.unicode = 'été 😀 中文 日本語 한국어 Ελληνικά עברית العربية';
      body.escapes = 'quote " backslash \\ slash / newline \n tab \t cr \r bell \u0007 nul \u0000';
      break;
    case 2:
      body.numbers = [0, -1, 1.5, 3.141592653589793, 1e-7, 12345678901234, -0.25, 1e21];
      body.flags = [true, false, null];
      break;
    case 3:
      body.tags = Array.from({length: 1 + (index % 7)}, (_, k) => `tag-${k}`);
      body[''] = 'empty key';
      body['key with spaces/and+symbols'] = 'ok';
      break;
    case 4:
      body.text = `lorem ipsum ${index} `.repeat(40 + (index % 50));
      break;
    default:
      body.list = Array.from({length: 20}, (_, k) => ({k, sq: k * k, even: k % 2 === 0}));
  }
  return body;
}

// Fills `db` (an empty PouchDB) and returns a description of what was done.
async function buildDataset(db, {count = 1000, seed = 20240607} = {}) {
  const random = rng(seed);
  const ids = docIds(count);
  const index = new Map(ids.map((id, i) => [id, i]));
  const revs = new Map();

  async function write(docs) {
    const res = await db.bulkDocs(docs);
    for (const r of res) {
      if (!r.ok) {
        throw new Error(`dataset write failed: ${JSON.stringify(r)}`);
      }
      revs.set(r.id, r.rev);
    }
  }

  // 1. Create everything (rev 1).
  await write(ids.map((id) => ({_id: id, ...makeBody(id, index.get(id), 1, random)})));

  // 2. Update some docs 2..4 times (rev 3..5): every 7th doc, plus chosen special ids.
  const updated = ids.filter(
    (id, i) => i % 7 === 0 || ['été 😀', 'with/slash', '_design/app', 'plus+sign', '中文文档'].includes(id),
  );
  const rounds = (id) => 2 + (index.get(id) % 3);
  for (let round = 1; round <= 4; round++) {
    const batch = updated.filter((id) => rounds(id) >= round);
    await write(batch.map((id) => ({_id: id, _rev: revs.get(id), ...makeBody(id, index.get(id), round + 1, random)})));
  }

  // 3. Delete some: every 13th doc plus 'with space' and 'hash#fragment'. Every 26th keeps a
  //    body in its tombstone (allowed by CouchDB, replicated verbatim).
  const deleted = ids.filter(
    (id, i) => (i % 13 === 0 && !id.startsWith('_design/')) || ['with space', 'hash#fragment'].includes(id),
  );
  await write(
    deleted.map((id) => {
      const i = index.get(id);
      const tomb = {_id: id, _rev: revs.get(id), _deleted: true};
      if (i % 26 === 0) {
        tomb.deleted_reason = `removed in round ${i}`;
      }
      return tomb;
    }),
  );

  // 4. Resurrect a few deleted docs (a new non-deleted rev on top of the tombstone).
  const resurrected = deleted.filter((id, k) => k % 5 === 0);
  await write(resurrected.map((id) => ({_id: id, ...makeBody(id, index.get(id), 9, random)})));

  // 5. A _local doc, which must never be replicated.
  await db.put({_id: '_local/not-replicated', secret: true});

  const resurrectedSet = new Set(resurrected);
  return {
    ids,
    special: SPECIAL_IDS,
    updated,
    deleted: deleted.filter((id) => !resurrectedSet.has(id)),
    resurrected,
  };
}

module.exports = {SPECIAL_IDS, buildDataset, docIds, makeBody, rng};
