'use strict';
// Scenario: PouchDB devices sync with the example FastAPI app (examples/todos), whose
// couchpoint is mounted at /sync over the app's own `todos` SQLite table.
//
//   node todos.js --url http://127.0.0.1:PORT/sync --db todos --app http://127.0.0.1:PORT \
//                 --users alice:pw,bob:pw
//
// 1. Alice's device pushes her todos; two forbidden docs (Bob as owner, no title) are
//    denied per doc (doc_write_failures, error `forbidden`) and the rest goes through.
// 2. Bob's device pushes his todos.
// 3. Alice's second device pulls: exactly Alice's todos, none of Bob's.
// 4. The app's own API (plain SQL on the table) adds and edits todos; both reach the
//    devices, including a live sync (polled with a deadline).
// 5. A device deletes a todo (keeping its owner); the app's table loses the row.

const {check, localDb, main, remoteDb, sync, waitFor} = require('./lib/common');

function basic(user, password) {
  return 'Basic ' + Buffer.from(`${user}:${password}`).toString('base64');
}

async function api(app, method, path, auth, body) {
  const options = {method, headers: {Authorization: auth, Accept: 'application/json'}};
  if (body !== undefined) {
    options.headers['Content-Type'] = 'application/json';
    options.body = JSON.stringify(body);
  }
  const response = await fetch(`${app}${path}`, options);
  const text = await response.text();
  return {status: response.status, json: text ? JSON.parse(text) : null};
}

async function ids(db) {
  const all = await db.allDocs();
  return all.rows.map((row) => row.id).sort();
}

main('todos', async ({url, db, app, users}) => {
  const [[alice, alicePw], [bob, bobPw]] = users.split(',').map((u) => u.split(':'));
  const aliceRemote = remoteDb(url, db, {auth: {username: alice, password: alicePw}, skip_setup: true});
  const bobRemote = remoteDb(url, db, {auth: {username: bob, password: bobPw}, skip_setup: true});

  // 1. Alice's device: three good todos, two that the validate hook rejects.
  const phone = localDb('alice-phone');
  await phone.bulkDocs([
    {_id: 'a-1', owner: alice, title: 'buy milk', done: false},
    {_id: 'a-2', owner: alice, title: 'call mum', done: false},
    {_id: 'a-3', owner: alice, title: 'water plants', done: true},
    {_id: 'a-bad-owner', owner: bob, title: 'not mine'},
    {_id: 'a-no-title', owner: alice},
  ]);
  const first = await sync(phone, aliceRemote);
  check(first.push.docs_written === 3, 'Alice did not push her three todos', first);
  check(first.push.doc_write_failures === 2, 'the two bad docs were not denied', first);
  // (PouchDB keeps the per-doc `error` as the name; its status for them is its own.)
  const denied = first.push.errors.map((e) => [e.id, e.name]).sort();
  check(
    JSON.stringify(denied) === JSON.stringify([['a-bad-owner', 'forbidden'], ['a-no-title', 'forbidden']]),
    'the bad docs were not denied as forbidden, per doc',
    first.push.errors,
  );

  // 2. Bob's device.
  const bobPhone = localDb('bob-phone');
  await bobPhone.bulkDocs([
    {_id: 'b-1', owner: bob, title: 'secret plan', done: false},
    {_id: 'b-2', owner: bob, title: 'another secret', done: false},
  ]);
  const bobSync = await sync(bobPhone, bobRemote);
  check(bobSync.push.docs_written === 2, 'Bob did not push his todos', bobSync);
  check(JSON.stringify(await ids(bobPhone)) === JSON.stringify(['b-1', 'b-2']), 'Bob received others\' todos');

  // 3. Alice's laptop pulls: hers only.
  const laptop = localDb('alice-laptop');
  const pulled = await sync(laptop, aliceRemote);
  check(pulled.pull.docs_written === 3, 'the laptop did not get exactly three todos', pulled);
  check(JSON.stringify(await ids(laptop)) === JSON.stringify(['a-1', 'a-2', 'a-3']), 'wrong todos on the laptop', await ids(laptop));

  // 4. The app edits its table: a new todo and a done flag.
  const auth = basic(alice, alicePw);
  const added = await api(app, 'POST', '/api/todos', auth, {title: 'from the web app'});
  check(added.status === 201, 'the app API did not add a todo', added);
  const edited = await api(app, 'PATCH', '/api/todos/a-1', auth, {done: true});
  check(edited.status === 200, 'the app API did not edit a todo', edited);
  const afterApp = await sync(laptop, aliceRemote);
  check(afterApp.pull.docs_written === 2, 'the app edits did not reach the laptop', afterApp);
  const a1 = await laptop.get('a-1');
  check(a1.done === true && a1._rev.startsWith('2-'), 'the app edit of a-1 is not a new revision', a1);
  const webTodo = await laptop.get(added.json.id);
  check(webTodo.title === 'from the web app' && webTodo.owner === alice, 'the app-made todo is wrong', webTodo);

  // Live: the phone keeps syncing while the app edits again.
  const live = phone.sync(aliceRemote, {live: true, retry: true});
  let liveMs;
  try {
    await waitFor('the phone to catch up', async () => (await ids(phone)).includes(added.json.id), {timeoutMs: 20000});
    const again = await api(app, 'PATCH', '/api/todos/a-2', auth, {title: 'call mum today'});
    check(again.status === 200, 'the app API did not edit a-2', again);
    liveMs = (
      await waitFor('the live edit on the phone', async () => (await phone.get('a-2')).title === 'call mum today', {
        timeoutMs: 20000,
      })
    ).ms;
  } finally {
    live.cancel();
  }

  // 5. A device deletes a todo, keeping its owner (what the read rule needs).
  const a3 = await laptop.get('a-3');
  await laptop.put({...a3, _deleted: true});
  const deletion = await sync(laptop, aliceRemote);
  check(deletion.push.docs_written === 1, 'the deletion was not pushed', deletion);
  const listed = await api(app, 'GET', '/api/todos', auth);
  const titles = listed.json.map((t) => t.title).sort();
  check(
    JSON.stringify(titles) === JSON.stringify(['buy milk', 'call mum today', 'from the web app']),
    'the app table does not show what the devices wrote',
    listed.json,
  );
  const bobsView = await api(app, 'GET', '/api/todos', basic(bob, bobPw));
  check(bobsView.json.length === 2, 'Bob\'s app view is wrong', bobsView.json);

  return {denied: denied.length, laptop_docs: (await ids(laptop)).length, live_ms: liveMs};
});
