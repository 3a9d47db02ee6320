'use strict';
// The demo page served by couchpoint (/_demo/) in headless Chromium: add a todo through the
// UI and tick it, wait for the server to hold it; write a todo on the server and wait for it
// in the page's list. Prints one JSON line; exit 1 on failure.
//
//   node tests/browser/demo.js --url COUCHPOINT --db NAME

const path = require('path');
const {createRequire} = require('module');

const jsRequire = createRequire(path.join(__dirname, '..', 'js', 'package.json'));
const {chromium} = jsRequire('playwright-core');

const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];

function args() {
  const out = {};
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i += 2) out[argv[i].replace(/^--/, '')] = argv[i + 1];
  return out;
}

async function waitFor(what, probe, timeoutMs) {
  const started = Date.now();
  for (;;) {
    const value = await probe();
    if (value) return {value, ms: Date.now() - started};
    if (Date.now() - started > timeoutMs) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

async function serverTodos(url, db) {
  const response = await fetch(`${url}/${db}/_all_docs?include_docs=true`);
  if (response.status !== 200) return [];
  return (await response.json()).rows.map((row) => row.doc).filter((doc) => doc.type === 'todo');
}

async function main() {
  const a = args();
  const deadline = 20000;
  const result = {ok: false, console: [], latency_ms: {}};
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: CHROMIUM_ARGS,
  });
  try {
    const page = await browser.newPage();
    page.on('console', (msg) => {
      if (msg.type() === 'error' && !/status of 404/.test(msg.text())) result.console.push(msg.text());
    });
    page.on('pageerror', (err) => result.console.push(String(err)));
    await page.goto(`${a.url}/_demo/?db=${a.db}`);
    result.title = await page.title();
    await page.waitForFunction(() => document.getElementById('status').className === 'synced', null,
      {timeout: deadline});

    // 1. add a todo through the UI, tick it: the server gets both versions
    await page.fill('#title', 'water the plants');
    await page.click('#add button');
    await page.waitForSelector('#todos li .title');
    await page.check('#todos li input[type=checkbox]');
    const up = await waitFor('todo on the server', async () => {
      const todos = await serverTodos(a.url, a.db);
      return todos.length === 1 && todos[0].done === true ? todos[0] : null;
    }, deadline);
    result.latency_ms.page_to_server = up.ms;
    result.server_todo = up.value;

    // 2. a todo written on the server shows up in the list
    const put = await fetch(`${a.url}/${a.db}/from-server`, {
      method: 'PUT',
      headers: {'Content-Type': 'application/json'},
      body: JSON.stringify({type: 'todo', title: 'written on the server', done: false}),
    });
    result.put_status = put.status;
    const down = await waitFor('server todo in the page', async () => {
      const titles = await page.$$eval('#todos li .title', (els) => els.map((el) => el.textContent));
      return titles.includes('written on the server') ? titles : null;
    }, deadline);
    result.latency_ms.server_to_page = down.ms;
    result.page_titles = down.value;
    result.status_text = await page.textContent('#status');
    result.ok = result.console.length === 0;
  } catch (err) {
    result.error = String(err && err.stack || err);
  } finally {
    await browser.close();
  }
  process.stdout.write(JSON.stringify(result) + '\n');
  process.exit(result.ok ? 0 : 1);
}

main();
