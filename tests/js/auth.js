'use strict';
// Scenario: PouchDB 9 replicating with credentials (issue 5).
//
//   node auth.js --url URL --db DB --mode basic  --user NAME --password PW
//   node auth.js --url URL --db DB --mode cookie --user NAME --password PW
//   node auth.js --url URL --db DB --mode none
//
// basic:  the remote is opened with PouchDB's `auth` option (Basic on every request);
// cookie: POST /_session (JSON, as pouchdb-authentication does) through PouchDB's fetch,
//         whose cookie jar then sends AuthSession with every request; no credentials;
// both:   push 40 docs and a design doc (the user is a member, not a db admin: the design
//         doc is denied and the replication carries on), pull them into a fresh db,
//         then a two-way sync picks up a server-side edit.
// none:   no credentials at all: the push and the pull must fail with 401.

const {PouchDB, check, http, localDb, main, remoteDb, replicate, sync} = require('./lib/common');

const DOCS = 40;

async function login(url, user, password) {
  const response = await PouchDB.fetch(`${url}/_session`, {
    method: 'POST',
    headers: {'Content-Type': 'application/json', Accept: 'application/json'},
    body: JSON.stringify({name: user, password}),
  });
  const body = await response.json();
  check(response.status === 200, `POST /_session answered ${response.status}`, body);
  const session = await (await PouchDB.fetch(`${url}/_session`, {headers: {Accept: 'application/json'}})).json();
  check(session.userCtx.name === user, 'the session cookie was not sent back', session);
  return session.userCtx;
}

async function fill(db) {
  const docs = [];
  for (let i = 0; i < DOCS; i++) {
    docs.push({_id: `doc-${String(i).padStart(3, '0')}`, n: i});
  }
  docs.push({_id: '_design/app', views: {}});
  await db.bulkDocs(docs);
}

main('auth', async ({url, db, mode, user, password}) => {
  const local = localDb(`auth-${mode}`);
  await fill(local);
  if (mode === 'none') {
    const remote = remoteDb(url, db);
    const denied = {};
    for (const [name, run] of [
      ['push', () => replicate(local, remote)],
      ['pull', () => replicate(remote, localDb('auth-none-pull'))],
    ]) {
      try {
        await run();
        denied[name] = 'completed';
      } catch (err) {
        denied[name] = err.status;
      }
    }
    return {mode, denied};
  }
  let remote;
  let userCtx = null;
  if (mode === 'basic') {
    remote = remoteDb(url, db, {auth: {username: user, password}});
  } else if (mode === 'cookie') {
    userCtx = await login(url, user, password);
    remote = remoteDb(url, db);
  } else {
    throw new Error(`unknown --mode ${mode}`);
  }
  const push = await replicate(local, remote);
  check(push.docs_written === DOCS, `push wrote ${push.docs_written} docs`, push);
  check(push.doc_write_failures === 1, 'the design doc should have been denied', push);
  const copy = localDb(`auth-${mode}-copy`);
  const pull = await replicate(remote, copy);
  const info = await copy.info();
  check(info.doc_count === DOCS, `pull brought ${info.doc_count} docs`, pull);
  const edit = await http('GET', `${url}/${db}/doc-000`);
  check(edit.status === 401, `plain fetch without credentials got ${edit.status}`, edit.json);
  const doc = await remote.get('doc-001');
  doc.edited = 'on the server';
  await remote.put(doc);
  const both = await sync(copy, remote);
  const synced = await copy.get('doc-001');
  check(synced.edited === 'on the server', 'the server-side edit did not arrive', both);
  return {mode, userCtx, push, pull, sync: both};
});
