'use strict';
// PouchDB in headless Chromium (page on one origin) and PouchDB in Node, both live-syncing
// with couchpoint (another origin). A doc written on each side must appear on the other,
// within a deadline (polled, never slept). Prints one JSON line; exit 1 on failure.
//
//   node tests/browser/sync.js --page URL --url COUCHPOINT --db NAME [--user U --pass P]
//
// Chromium: $CHROMIUM or /usr/bin/chromium (Debian's package), driven by playwright-core
// (tests/js/node_modules); PouchDB for Node from tests/js/node_modules too.

const path = require('path');
const {createRequire} = require('module');

const jsRequire = createRequire(path.join(__dirname, '..', 'js', 'package.json'));
const {chromium} = jsRequire('playwright-core');
const PouchDB = jsRequire('pouchdb').plugin(jsRequire('pouchdb-adapter-memory'));

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

async function main() {
  const a = args();
  const deadline = parseInt(a.timeout || '20000', 10);
  const remoteUrl = `${a.url}/${a.db}`;
  const auth = a.user ? {username: a.user, password: a.pass} : undefined;
  const result = {ok: false, latency_ms: {}, cors: {responses: 0, bad: []}, console: [], failed: []};

  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: CHROMIUM_ARGS,
  });
  let nodeSync;
  try {
    const page = await browser.newPage();
    const pageOrigin = new URL(a.page).origin;
    page.on('console', (msg) => {
      if (msg.type() !== 'error') return;
      const where = msg.location().url || '';
      // 404s the browser logs for requests that are expected to miss: the favicon, and
      // PouchDB's first look for its replication checkpoints (_local docs)
      if (/status of 404/.test(msg.text()) && (where.endsWith('/favicon.ico') || where.includes('/_local/'))) {
        result.expected_404s = (result.expected_404s || 0) + 1;
        return;
      }
      result.console.push(`${msg.text()} @ ${where}`);
    });
    page.on('pageerror', (err) => result.console.push(String(err)));
    page.on('requestfailed', (req) => {
      const failure = req.failure() ? req.failure().errorText : '';
      // a live feed aborted by cancel() at the end is expected
      if (!(failure === 'net::ERR_ABORTED' && req.url().includes('/_changes'))) {
        result.failed.push(`${req.method()} ${req.url()} ${failure}`);
      }
    });
    page.on('response', (res) => {
      if (!res.url().startsWith(a.url)) return;
      result.cors.responses += 1;
      const h = res.headers();
      if (h['access-control-allow-origin'] !== pageOrigin || h['access-control-allow-credentials'] !== 'true') {
        result.cors.bad.push({url: res.url(), status: res.status(), headers: h});
      }
    });
    const query = new URLSearchParams({remote: remoteUrl, ...(auth ? {user: a.user, pass: a.pass} : {})});
    await page.goto(`${a.page}?${query}`);
    await page.waitForFunction(() => window.app !== undefined, null, {timeout: deadline});
    result.browser_adapter = await page.evaluate(() => window.app.adapter);
    result.page_origin = pageOrigin;
    result.server_origin = new URL(a.url).origin;

    const node = new PouchDB('node-client', {adapter: 'memory'});
    nodeSync = node.sync(new PouchDB(remoteUrl, auth ? {auth} : {}), {live: true, retry: true});
    const nodeErrors = [];
    nodeSync.on('error', (err) => nodeErrors.push(String(err && err.message)));

    // 1. written in the browser -> Node
    const browserRev = await page.evaluate(() => window.app.put({_id: 'from-browser', text: 'hello from Chromium'}));
    result.latency_ms.browser_to_node = (await waitFor('browser doc in Node', async () => {
      const doc = await node.get('from-browser').catch(() => null);
      return doc && doc._rev === browserRev ? doc : null;
    }, deadline)).ms;

    // 2. written in Node -> browser
    const nodeRev = (await node.put({_id: 'from-node', text: 'hello from Node'})).rev;
    result.latency_ms.node_to_browser = (await waitFor('Node doc in the browser', () =>
      page.evaluate((rev) => window.app.rev('from-node').then((r) => r === rev), nodeRev), deadline)).ms;

    // 3. the browser edits the Node doc -> Node
    const edited = await page.evaluate(async () => {
      const doc = await window.app.get('from-node');
      doc.text = 'edited in Chromium';
      return window.app.put(doc);
    });
    result.latency_ms.edit_browser_to_node = (await waitFor('edit in Node', async () => {
      const doc = await node.get('from-node').catch(() => null);
      return doc && doc._rev === edited ? doc : null;
    }, deadline)).ms;
    result.node_sees = await node.get('from-node');
    result.browser_sees = await page.evaluate(() => window.app.get('from-browser'));

    result.browser_state = await page.evaluate(() => window.app.state);

    // Control: the same page from an origin that is not on couchpoint's allow-list
    // (localhost instead of 127.0.0.1) must be refused by the browser.
    const other = await browser.newPage();
    await other.goto(a.page.replace('127.0.0.1', 'localhost') + 'missing-page');
    result.other_origin = await other.evaluate((u) => fetch(u, {credentials: 'include'})
      .then((r) => `allowed ${r.status}`, (e) => `blocked: ${e}`), remoteUrl);
    await other.close();
    await page.evaluate(() => window.app.cancel());
    nodeSync.cancel();
    result.node_errors = nodeErrors;
    result.ok = result.cors.bad.length === 0 && result.browser_state.errors.length === 0
      && nodeErrors.length === 0;
  } catch (err) {
    result.error = String(err && err.stack || err);
  } finally {
    if (nodeSync) nodeSync.cancel();
    await browser.close();
  }
  process.stdout.write(JSON.stringify(result) + '\n');
  process.exit(result.ok ? 0 : 1);
}

main();
