"""PouchDB in a real browser (headless Debian Chromium) live-syncing through couchpoint
with PouchDB in Node (issue 4, protocol reference §11.3, BC-25).

The page (``tests/browser/page/index.html`` plus PouchDB's browser build from npm) is
served by a small static server on one origin; ``couchpoint serve`` runs on another
(another port), with an admin and an explicit CORS allow-list, so every request of the
page is a credentialed cross-origin request with an ``Authorization`` header, preflighted
by the browser.  ``tests/browser/sync.js`` drives Chromium with playwright-core and runs
the Node client; a doc written on each side must appear on the other within a deadline.

Needs Debian's ``chromium`` (``scripts/test`` installs it as root) and the npm packages of
``tests/js`` (``playwright-core``, ``pouchdb``).  Missing pieces fail the test with what
to install; they never skip it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.browser

HERE = Path(__file__).resolve().parent
JS_DIR = HERE.parent / "js"
POUCHDB_JS = JS_DIR / "node_modules" / "pouchdb" / "dist" / "pouchdb.min.js"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
ADMIN = ("admin", "s3cret:p@ss")
TIMEOUT = 120.0


def _require_tools() -> str:
    if not (Path(CHROMIUM).is_file() and os.access(CHROMIUM, os.X_OK)):
        pytest.fail(
            f"Chromium not found at {CHROMIUM}: the browser test needs Debian's `chromium` package "
            "(./scripts/test installs it when run as root; by hand: apt-get install chromium), "
            "or set CHROMIUM to another Chromium executable",
            pytrace=False,
        )
    missing = [
        name
        for name in ("playwright-core", "pouchdb", "pouchdb-adapter-memory")
        if not (JS_DIR / "node_modules" / name / "package.json").is_file()
    ]
    if missing:
        pytest.fail(
            f"tests/js/node_modules lacks {', '.join(missing)}: run ./scripts/test (npm ci in tests/js)",
            pytrace=False,
        )
    node = shutil.which("node")
    if node is None:
        pytest.fail("`node` is not on PATH: the browser test needs Node.js 20 or newer", pytrace=False)
    return node


class _PageHandler(SimpleHTTPRequestHandler):
    """Serves the test page and PouchDB's browser build, nothing else."""

    FILES = {"/": HERE / "page" / "index.html", "/pouchdb.min.js": POUCHDB_JS}

    def translate_path(self, path: str) -> str:
        return str(self.FILES.get(path.split("?", 1)[0], HERE / "page" / "missing"))

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def page_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_PageHandler, directory=str(HERE / "page")))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def couchpoint(tmp_path: Path, page_origin: str) -> Iterator[str]:
    """``couchpoint serve`` with an admin and CORS allowed for ``page_origin`` only."""
    # imported here: tests/test_pouchdb.py loads tests.realserver as a plugin (assertion
    # rewriting), which warns when a test module imported it first
    from tests.realserver import HOST, free_port, serve_command

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("COUCHPOINT_")}
    env.update(
        COUCHPOINT_ADMINS=f"{ADMIN[0]}:{ADMIN[1]}",
        COUCHPOINT_CORS_ORIGINS=page_origin,
        COUCHPOINT_CORS_CREDENTIALS="true",
        PYTHONUNBUFFERED="1",
    )
    log = (tmp_path / "server.log").open("wb")
    process = subprocess.Popen(
        serve_command(port, tmp_path / "data", log_level="warning"),
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    url = f"http://{HOST}:{port}"
    try:
        with httpx.Client(timeout=2) as client:
            for _ in range(600):
                if process.poll() is not None:
                    pytest.fail(f"couchpoint exited: {(tmp_path / 'server.log').read_text()}", pytrace=False)
                with contextlib.suppress(httpx.TransportError):
                    if client.get(url + "/").status_code == 200:
                        break
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(0.05)
            else:
                pytest.fail("couchpoint did not start", pytrace=False)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def test_pouchdb_in_chromium_live_syncs_with_node_through_couchpoint(tmp_path: Path) -> None:
    node = _require_tools()
    with page_server() as page_url, couchpoint(tmp_path, page_url) as url:
        assert page_url != url  # two origins: every request of the page is cross-origin
        with httpx.Client(base_url=url, auth=ADMIN) as client:
            assert client.put("/shared").status_code == 201
        command = [node, str(HERE / "sync.js"), "--page", page_url + "/", "--url", url, "--db", "shared"]
        command += ["--user", ADMIN[0], "--pass", ADMIN[1]]
        done = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT, env={**os.environ})
        lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
        assert lines, f"sync.js printed no result (exit {done.returncode}):\n{done.stdout}\n{done.stderr}"
        result = json.loads(lines[-1])
        print(json.dumps({k: result[k] for k in ("latency_ms", "cors", "expected_404s") if k in result}))
        assert done.returncode == 0 and result["ok"], json.dumps(result, indent=1)[:6000]
        with httpx.Client(base_url=url, auth=ADMIN) as client:
            server_docs = {
                row["id"]: row["doc"]
                for row in client.get("/shared/_all_docs", params={"include_docs": "true"}).json()["rows"]
            }
    assert result["browser_adapter"] == "idb"  # PouchDB's IndexedDB adapter in Chromium
    assert result["page_origin"] != result["server_origin"]
    assert result["cors"]["responses"] > 5 and result["cors"]["bad"] == []
    assert result["failed"] == [] and result["console"] == []
    assert result["browser_sees"]["text"] == "hello from Chromium"
    assert result["node_sees"]["text"] == "edited in Chromium"
    assert result["node_sees"]["_rev"].startswith("2-")
    assert server_docs["from-browser"]["text"] == "hello from Chromium"
    assert server_docs["from-node"]["text"] == "edited in Chromium"
    # the control: an origin missing from the allow-list gets no CORS headers, so the
    # browser refuses to hand the response to the page
    assert result["other_origin"].startswith("blocked: TypeError"), result["other_origin"]
    assert set(result["latency_ms"]) == {"browser_to_node", "node_to_browser", "edit_browser_to_node"}
