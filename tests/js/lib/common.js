'use strict';
// Shared helpers for the PouchDB 9 scenario scripts (tests/js/*.js).
//
// Every scenario is run as `node <scenario>.js --url <server root> --db <db name>`
// (or with COUCHPOINT_URL / COUCHPOINT_DB in the environment). It prints ONE
// line of JSON on stdout: the result, `{"ok": true, "scenario": ..., ...}`, or
// `{"ok": false, "error": ...}` followed by exit code 1. Diagnostics (the last
// HTTP exchanges PouchDB had with the server) go to stderr on failure; set
// PDB_HTTP_LOG=<file> to get every exchange as JSON lines.

const fs = require('fs');
const util = require('util');

const PouchDB = require('pouchdb').plugin(require('pouchdb-adapter-memory'));

// ---------------------------------------------------------------------------
// Arguments

function parseArgs(argv = process.argv.slice(2)) {
  const args = {};
  const positional = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a.startsWith('--')) {
      const eq = a.indexOf('=');
      if (eq !== -1) {
        args[a.slice(2, eq)] = a.slice(eq + 1);
      } else {
        args[a.slice(2)] = argv[++i];
      }
    } else {
      positional.push(a);
    }
  }
  const url = args.url || positional[0] || process.env.COUCHPOINT_URL;
  const db = args.db || positional[1] || process.env.COUCHPOINT_DB;
  if (!url || !db) {
    throw new Error('usage: node <scenario>.js --url http://127.0.0.1:PORT --db DBNAME');
  }
  return {...args, url: url.replace(/\/+$/, ''), db};
}

// ---------------------------------------------------------------------------
// HTTP traffic log (wraps the fetch used by PouchDB's HTTP adapter)

const HTTP_LOG_LIMIT = 60; // exchanges kept for the failure report
const BODY_LIMIT = 1500; // characters of each body kept in the failure report
const httpLog = [];
const httpLogFile = process.env.PDB_HTTP_LOG ? fs.openSync(process.env.PDB_HTTP_LOG, 'a') : null;
const httpCounts = {};
// Requests PouchDB has started whose response body has not been fully received yet.
const inflight = {count: 0, open: new Set()};

function clip(text, limit = BODY_LIMIT) {
  if (typeof text !== 'string') {
    return text;
  }
  return text.length > limit ? text.slice(0, limit) + `…(+${text.length - limit} chars)` : text;
}

function recordExchange(entry) {
  const key = `${entry.method} ${entry.endpoint}`;
  httpCounts[key] = (httpCounts[key] || 0) + 1;
  httpLog.push(entry);
  if (httpLog.length > HTTP_LOG_LIMIT) {
    httpLog.shift();
  }
  if (httpLogFile !== null) {
    fs.writeSync(httpLogFile, JSON.stringify(entry) + '\n');
  }
}

// "/db/_changes?..." -> "_changes", "/db/some%2Fid?x" -> "{docid}", "/" -> "/"
function endpointOf(url) {
  const path = new URL(url).pathname.split('/').filter(Boolean);
  if (path.length === 0) {
    return '/';
  }
  if (path.length === 1) {
    return '{db}';
  }
  const first = decodeURIComponent(path[1]);
  if (first === '_local' || first === '_design') {
    return first + '/…';
  }
  return first.startsWith('_') ? first : '{docid}';
}

function loggingFetch(url, options = {}) {
  const started = Date.now();
  const method = options.method || 'GET';
  const body = typeof options.body === 'string' ? options.body : undefined;
  const entry = {t: new Date(started).toISOString(), method, url, endpoint: endpointOf(url)};
  if (body !== undefined && body !== 'undefined') {
    entry.request = httpLogFile !== null ? body : clip(body);
  }
  // A request is open until its response body has been read in full, it failed, or
  // PouchDB aborted it (how a cancelled live sync ends its long-polled _changes).
  let open = true;
  const onAbort = () => {
    entry.aborted_after_ms = Date.now() - started;
    settle();
  };
  const settle = () => {
    if (open) {
      open = false;
      inflight.count -= 1;
      inflight.open.delete(entry);
      if (options.signal) {
        options.signal.removeEventListener('abort', onAbort);
      }
      recordExchange(entry);
    }
  };
  inflight.count += 1;
  inflight.open.add(entry);
  if (options.signal) {
    options.signal.addEventListener('abort', onAbort);
  }
  return PouchDB.fetch(url, options).then(
    (response) => {
      entry.status = response.status;
      entry.ms = Date.now() - started;
      response
        .clone()
        .text()
        .then(
          (text) => {
            entry.response = httpLogFile !== null ? text : clip(text);
            entry.ms_body = Date.now() - started;
          },
          (err) => {
            entry.response_error = String(err && err.message);
          },
        )
        .finally(settle);
      return response;
    },
    (err) => {
      entry.fetch_error = String(err && err.message);
      entry.ms = Date.now() - started;
      settle();
      throw err;
    },
  );
}

// ---------------------------------------------------------------------------
// Databases

let localCounter = 0;

function localDb(label = 'local') {
  localCounter += 1;
  return new PouchDB(`${label}-${process.pid}-${localCounter}`, {adapter: 'memory'});
}

// A PouchDB handle on the server's database; all its traffic is logged.
function remoteDb(url, db, extra = {}) {
  return new PouchDB(`${url}/${encodeURIComponent(db)}`, {fetch: loggingFetch, ...extra});
}

// Plain HTTP against the server, for checks that must not go through PouchDB.
async function http(method, url, body) {
  const options = {method, headers: {Accept: 'application/json'}};
  if (body !== undefined) {
    options.headers['Content-Type'] = 'application/json';
    options.body = JSON.stringify(body);
  }
  const started = Date.now();
  const response = await fetch(url, options);
  const text = await response.text();
  recordExchange({
    t: new Date(started).toISOString(),
    method,
    url,
    endpoint: endpointOf(url),
    direct: true,
    request: options.body === undefined ? undefined : clip(options.body),
    status: response.status,
    response: clip(text),
    ms: Date.now() - started,
  });
  let json;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new Error(`${method} ${url} -> ${response.status}: body is not JSON: ${clip(text, 300)}`);
  }
  return {status: response.status, json};
}

async function dbInfo(url, db) {
  const {status, json} = await http('GET', `${url}/${encodeURIComponent(db)}/`);
  check(status === 200, `GET /${db}/ answered ${status}`, json);
  return json;
}

// ---------------------------------------------------------------------------
// Replication helpers

function replicationSummary(result) {
  return {
    ok: result.ok,
    status: result.status,
    docs_read: result.docs_read,
    docs_written: result.docs_written,
    doc_write_failures: result.doc_write_failures,
    errors: (result.errors || []).map((e) => ({
      status: e.status,
      name: e.name,
      message: e.message,
      id: e.id,
    })),
    last_seq: result.last_seq,
    ms: new Date(result.end_time) - new Date(result.start_time),
  };
}

async function replicate(source, target, opts = {}) {
  const result = await PouchDB.replicate(source, target, opts);
  return replicationSummary(result);
}

async function sync(local, remote, opts = {}) {
  const result = await local.sync(remote, opts);
  return {push: replicationSummary(result.push), pull: replicationSummary(result.pull)};
}

// ---------------------------------------------------------------------------
// Snapshots: the complete replicated state of a database, in one comparable shape
//
//   {docId: {rev: <winning rev>, deleted: bool, leaves: [<rev>...sorted],
//            conflicts: [<non-deleted losing leaves, sorted>],
//            revs: {<leaf rev>: {deleted: bool, body: {...}, revisions: {start, ids}}}}}
//
// Built only from `_changes?style=all_docs&include_docs=true` and `_bulk_get?revs=true`,
// so it works the same on a local memory db and on a remote db.

function stripMeta(doc) {
  const body = {};
  for (const [k, v] of Object.entries(doc)) {
    if (!['_id', '_rev', '_revisions', '_deleted', '_conflicts', '_attachments'].includes(k)) {
      body[k] = v;
    }
  }
  return body;
}

function revCompare(a, b) {
  const [pa, ha] = [parseInt(a, 10), a.slice(a.indexOf('-') + 1)];
  const [pb, hb] = [parseInt(b, 10), b.slice(b.indexOf('-') + 1)];
  return pa !== pb ? pa - pb : ha < hb ? -1 : ha > hb ? 1 : 0;
}

function sortRevs(revs) {
  return [...revs].sort(revCompare);
}

async function snapshot(db) {
  const changes = await db.changes({style: 'all_docs', include_docs: true, return_docs: true});
  const state = {};
  const wanted = [];
  for (const row of changes.results) {
    check(!(row.id in state), `_changes listed ${JSON.stringify(row.id)} twice`, row);
    check(row.doc && typeof row.doc._rev === 'string', `_changes row without doc._rev`, row);
    const leaves = sortRevs(row.changes.map((c) => c.rev));
    state[row.id] = {
      rev: row.doc._rev,
      deleted: row.deleted === true,
      leaves,
      conflicts: null,
      revs: {},
      seq: row.seq,
    };
    for (const rev of leaves) {
      wanted.push({id: row.id, rev});
    }
  }
  const got = wanted.length ? await db.bulkGet({docs: wanted, revs: true}) : {results: []};
  check(got.results.length === wanted.length, `_bulk_get: ${got.results.length} results for ${wanted.length} requests`);
  got.results.forEach((result, i) => {
    const want = wanted[i];
    check(result.id === want.id, `_bulk_get result ${i} is for ${result.id}, not ${want.id}`);
    check(result.docs.length === 1 && result.docs[0].ok, `_bulk_get ${want.id} ${want.rev} failed`, result);
    const doc = result.docs[0].ok;
    check(doc._rev === want.rev, `_bulk_get ${want.id} asked ${want.rev}, got ${doc._rev}`);
    state[want.id].revs[want.rev] = {
      deleted: doc._deleted === true,
      body: stripMeta(doc),
      revisions: doc._revisions,
    };
  });
  for (const entry of Object.values(state)) {
    entry.conflicts = entry.leaves.filter((r) => r !== entry.rev && !entry.revs[r].deleted);
    delete entry.seq;
  }
  return state;
}

// CouchDB's winner: non-deleted leaves beat deleted ones, then highest (pos, hash).
function expectedWinner(entry) {
  const live = entry.leaves.filter((r) => !entry.revs[r].deleted);
  const pool = live.length ? live : entry.leaves;
  return sortRevs(pool)[pool.length - 1];
}

function canonical(value) {
  if (Array.isArray(value)) {
    return value.map(canonical);
  }
  if (value !== null && typeof value === 'object') {
    const out = {};
    for (const k of Object.keys(value).sort()) {
      out[k] = canonical(value[k]);
    }
    return out;
  }
  return value;
}

function same(a, b) {
  return JSON.stringify(canonical(a)) === JSON.stringify(canonical(b));
}

// POUCHDB_SERVER_QUIRKS=1 is only for proving these scripts against express-pouchdb (the
// reference server used while couchpoint was being written), never for couchpoint:
// express-pouchdb answers GET of a deleted doc with reason "missing" where CouchDB says
// "deleted"; with the flag, 404 reasons are not compared.
const QUIRKS = process.env.POUCHDB_SERVER_QUIRKS === '1';

// Differences between two snapshots, as readable strings (at most `limit`).
function diffSnapshots(expected, actual, {expectedName = 'expected', actualName = 'actual', limit = 25} = {}) {
  const problems = [];
  const ids = new Set([...Object.keys(expected), ...Object.keys(actual)]);
  for (const id of [...ids].sort()) {
    if (problems.length >= limit) {
      problems.push('…');
      break;
    }
    const e = expected[id];
    const a = actual[id];
    const q = JSON.stringify(id);
    if (!a) {
      problems.push(`${q}: missing on ${actualName}`);
      continue;
    }
    if (!e) {
      problems.push(`${q}: only on ${actualName} (rev ${a.rev})`);
      continue;
    }
    for (const key of ['rev', 'deleted', 'leaves', 'conflicts']) {
      if (!same(e[key], a[key])) {
        problems.push(`${q}: ${key} ${expectedName}=${JSON.stringify(e[key])} ${actualName}=${JSON.stringify(a[key])}`);
      }
    }
    for (const rev of e.leaves) {
      if (a.revs[rev] && !same(e.revs[rev], a.revs[rev])) {
        problems.push(
          `${q} ${rev}: ${expectedName}=${JSON.stringify(e.revs[rev])} ${actualName}=${JSON.stringify(a.revs[rev])}`,
        );
      }
    }
  }
  return problems;
}

// Compact per-doc view for the JSON result: {id: {rev, deleted, leaves}} plus bodies
// of winners (Python re-checks these against the server with its own HTTP client).
function summarize(state) {
  const out = {};
  for (const [id, e] of Object.entries(state)) {
    out[id] = {
      rev: e.rev,
      deleted: e.deleted,
      leaves: e.leaves,
      conflicts: e.conflicts,
      body: e.revs[e.rev].body,
      revisions: e.revs[e.rev].revisions,
    };
  }
  return out;
}

// ---------------------------------------------------------------------------
// Waiting (always against a deadline, never a fixed sleep)

function delay(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

// Polls `probe` (async, returns a truthy value when done) every `interval` ms until
// `timeoutMs` has passed; returns the value and how long it took.
async function waitFor(description, probe, {timeoutMs = 20000, interval = 25} = {}) {
  const started = Date.now();
  let last;
  for (;;) {
    try {
      last = await probe();
    } catch (err) {
      last = err;
    }
    if (last && !(last instanceof Error)) {
      return {value: last, ms: Date.now() - started};
    }
    if (Date.now() - started > timeoutMs) {
      throw new ScenarioError(`timed out after ${timeoutMs} ms waiting for ${description}`, {
        last: last instanceof Error ? String(last) : last,
      });
    }
    await delay(interval);
  }
}

// ---------------------------------------------------------------------------
// Results and failures

class ScenarioError extends Error {
  constructor(message, details) {
    super(message);
    this.details = details;
  }
}

function check(condition, message, details) {
  if (!condition) {
    throw new ScenarioError(message, details);
  }
}

// Writes the result line, then exits once it has been flushed (stdout may be a pipe,
// where process.exit() right after write() would cut the output short).
function emitAndExit(result, code) {
  process.stdout.write(JSON.stringify(result) + '\n', () => process.exit(code));
}

function httpLogReport() {
  const lines = [`--- HTTP request counts: ${JSON.stringify(httpCounts)}`];
  lines.push(`--- last ${httpLog.length} HTTP exchanges (oldest first):`);
  for (const e of httpLog) {
    lines.push(JSON.stringify(e));
  }
  if (inflight.open.size) {
    lines.push(`--- ${inflight.open.size} requests still open:`);
    for (const e of inflight.open) {
      lines.push(JSON.stringify(e));
    }
  }
  return lines.join('\n') + '\n';
}

// Runs `body(args)` (async) and reports its result; never returns.
function main(scenario, body) {
  const started = Date.now();
  let args;
  Promise.resolve()
    .then(() => {
      args = parseArgs();
      return body(args);
    })
    .then(
      (result) => {
        const meta = {pouchdb_version: PouchDB.version, http_requests: httpCounts, total_ms: Date.now() - started};
        emitAndExit({ok: true, scenario, ...result, ...meta}, 0);
      },
      (err) => {
        const error = {
          ok: false,
          scenario,
          error: err && err.message ? err.message : String(err),
          name: err && err.name,
          status: err && err.status,
          details: err && err.details !== undefined ? err.details : undefined,
          http_requests: httpCounts,
          total_ms: Date.now() - started,
        };
        const report = `${scenario} FAILED: ${util.inspect(err, {depth: 6})}\n${httpLogReport()}`;
        process.stderr.write(report, () => emitAndExit(error, 1));
      },
    );
}

module.exports = {
  PouchDB,
  QUIRKS,
  check,
  dbInfo,
  delay,
  diffSnapshots,
  expectedWinner,
  http,
  inflight,
  localDb,
  main,
  remoteDb,
  replicate,
  same,
  ScenarioError,
  snapshot,
  sortRevs,
  summarize,
  sync,
  waitFor,
};
