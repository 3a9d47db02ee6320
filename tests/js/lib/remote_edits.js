'use strict';
// Edits made directly on the server over plain HTTP (not through PouchDB), used to give
// the server documents with conflicts, deleted conflict leaves, server-generated
// revisions and server-side deletions.

const crypto = require('crypto');

const {check, http} = require('./common');

function hash(seed) {
  return crypto.createHash('md5').update(String(seed)).digest('hex');
}

function docUrl(url, db, id) {
  // Same encoding as PouchDB: `_design/x` keeps its slash, everything else is one segment.
  const encoded = id.startsWith('_design/') ? '_design/' + encodeURIComponent(id.slice(8)) : encodeURIComponent(id);
  return `${url}/${encodeURIComponent(db)}/${encoded}`;
}

// Writes revisions verbatim with `_bulk_docs` + new_edits=false (what replicators do).
async function putRevisions(url, db, docs) {
  const {status, json} = await http('POST', `${url}/${encodeURIComponent(db)}/_bulk_docs`, {
    docs,
    new_edits: false,
  });
  check(status === 201, `_bulk_docs new_edits=false answered ${status}`, json);
  const errors = Array.isArray(json) ? json.filter((r) => r.error) : [json];
  check(errors.length === 0, '_bulk_docs new_edits=false reported errors', errors);
}

// A new branch for `doc` (a leaf as returned by GET ?revs=true): it forks `depth` revisions
// below the leaf (depth 1 = sibling of the leaf) and grows `length` new revisions.
function branch(doc, {fork = 1, length = 1, deleted = false, body = {}, seed = ''}) {
  const {start, ids} = doc._revisions;
  const keep = ids.slice(fork);
  check(keep.length > 0, `cannot fork ${doc._id} ${fork} revisions below ${doc._rev}`);
  const fresh = Array.from({length}, (_, k) => hash(`${doc._id}|${doc._rev}|${fork}|${k}|${seed}`)).reverse();
  const newStart = start - fork + length;
  const out = {_id: doc._id, _rev: `${newStart}-${fresh[0]}`, _revisions: {start: newStart, ids: [...fresh, ...keep]}};
  if (deleted) {
    out._deleted = true;
  }
  return {...body, ...out};
}

async function getDoc(url, db, id) {
  const {status, json} = await http('GET', docUrl(url, db, id));
  check(status === 200 && json._id === id, `GET ${id} answered ${status}`, json);
  return json;
}

// Interactive (new_edits=true) update: PUT /db/doc with the current _rev.
async function putDoc(url, db, doc) {
  const {status, json} = await http('PUT', docUrl(url, db, doc._id), doc);
  check(status === 201 || status === 202, `PUT ${doc._id} answered ${status}`, json);
  check(json.ok === true && json.id === doc._id && /^\d+-[0-9a-f]{32}$/.test(json.rev), `bad PUT reply`, json);
  return json.rev;
}

async function deleteDoc(url, db, id, rev) {
  const {status, json} = await http('DELETE', `${docUrl(url, db, id)}?rev=${encodeURIComponent(rev)}`);
  check(status === 200 || status === 202, `DELETE ${id} answered ${status}`, json);
  check(json.ok === true && /^\d+-[0-9a-f]{32}$/.test(json.rev), `bad DELETE reply`, json);
  return json.rev;
}

module.exports = {branch, deleteDoc, docUrl, getDoc, hash, putDoc, putRevisions};
