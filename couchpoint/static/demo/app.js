// couchpoint demo: an offline-first todo list. The todos are kept in a local PouchDB
// (IndexedDB) and synced live, both ways, with the database `?db=` (default `demo-todos`)
// on the couchpoint that serves this page. See docs/demo.md.
'use strict';

(function () {
  const params = new URLSearchParams(location.search);
  const dbName = params.get('db') || 'demo-todos';
  // The page is served at <server>/_demo/; the database sits next to it.
  const base = location.href.replace(/\/_demo\/.*$/, '');
  const remoteUrl = `${base}/${encodeURIComponent(dbName)}`;
  const local = new PouchDB(`couchpoint-demo-${dbName}`);
  const remote = new PouchDB(remoteUrl);
  const $ = (id) => document.getElementById(id);
  let sync = null;

  function status(text, kind) {
    $('status').textContent = text;
    $('status').className = kind || '';
  }

  async function render() {
    const result = await local.allDocs({include_docs: true});
    const todos = result.rows.map((row) => row.doc).filter((doc) => doc.type === 'todo');
    const list = $('todos');
    list.replaceChildren(...todos.map((todo) => {
      const item = document.createElement('li');
      item.dataset.id = todo._id;
      item.className = todo.done ? 'done' : '';
      const box = document.createElement('input');
      box.type = 'checkbox';
      box.checked = !!todo.done;
      box.addEventListener('change', () => local.put({...todo, done: box.checked}));
      const title = document.createElement('span');
      title.className = 'title';
      title.textContent = todo.title;
      const remove = document.createElement('button');
      remove.textContent = '×';
      remove.title = 'delete';
      remove.addEventListener('click', () => local.remove(todo));
      item.append(box, title, remove);
      return item;
    }));
    $('where').textContent = `${todos.length} todo(s), synced with ${remoteUrl}`;
  }

  function startSync() {
    if (sync) sync.cancel();
    sync = local.sync(remote, {live: true, retry: true})
      .on('active', () => status('syncing…'))
      .on('paused', (err) => (err ? status('offline: changes are kept and will sync', 'offline')
        : status('in sync', 'synced')))
      .on('denied', (err) => status(`denied: ${err && err.reason}`, 'error'))
      .on('error', (err) => {
        if (err && (err.status === 401 || err.status === 403)) {
          status('sign in to sync (the server has admins)', 'error');
          $('login').hidden = false;
        } else {
          status(`sync error: ${err && (err.reason || err.message)}`, 'error');
        }
      });
  }

  $('add').addEventListener('submit', async (event) => {
    event.preventDefault();
    const title = $('title').value.trim();
    if (!title) return;
    const id = `${new Date().toISOString()}-${Math.random().toString(36).slice(2, 8)}`;
    await local.put({_id: id, type: 'todo', title, done: false});
    $('title').value = '';
  });

  $('login').addEventListener('submit', async (event) => {
    event.preventDefault();
    const response = await fetch(`${base}/_session`, {
      method: 'POST',
      credentials: 'include',
      headers: {'Content-Type': 'application/json', 'Accept': 'application/json'},
      body: JSON.stringify({name: $('user').value, password: $('pass').value}),
    });
    if (response.ok) {
      $('login').hidden = true;
      startSync();
    } else {
      status('wrong name or password', 'error');
    }
  });

  local.changes({live: true, since: 'now'}).on('change', render);
  render();
  startSync();
  window.demo = {local, remoteUrl, render};
})();
