"""The demo page (``/_demo/``, docs/demo.md): the files couchpoint serves, and the page
itself working in headless Chromium against a real ``couchpoint serve``."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import httpx
import pytest

from couchpoint import create_app
from couchpoint.config import Settings
from couchpoint.storage import MemoryStorage

from .test_browser_sync import HERE, POUCHDB_JS, _require_tools

STATIC = HERE.parents[1] / "couchpoint" / "static" / "demo"


def _client(**overrides: object) -> httpx.AsyncClient:
    app = create_app(storage=MemoryStorage(), settings=Settings(), **overrides)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://couchpoint.test")


async def test_demo_files_are_served_without_login() -> None:
    async with _client(admins={"admin": "pw"}) as client:
        response = await client.get("/_demo")
        assert (response.status_code, response.headers["location"]) == (301, "_demo/")
        page = await client.get("/_demo/")
        assert page.status_code == 200
        assert page.headers["content-type"] == "text/html; charset=utf-8"
        assert b'<script src="pouchdb-9.0.0.min.js"></script>' in page.content
        assert b'<script src="app.js"></script>' in page.content
        app_js = await client.get("/_demo/app.js")
        assert app_js.headers["content-type"] == "text/javascript; charset=utf-8"
        assert b"local.sync(remote, {live: true, retry: true})" in app_js.content
        pouch = await client.get("/_demo/pouchdb-9.0.0.min.js")
        assert pouch.content.startswith(b"// PouchDB 9.0.0")
        assert pouch.headers["cache-control"] == "max-age=86400"
        again = await client.get("/_demo/app.js", headers={"If-None-Match": app_js.headers["etag"]})
        assert (again.status_code, again.content) == (304, b"")
        head = await client.head("/_demo/")
        assert (head.status_code, head.content) == (200, b"")
        assert head.headers["content-length"] == str(len(page.content))


async def test_demo_errors_are_couchdb_json() -> None:
    async with _client() as client:
        missing = await client.get("/_demo/%2E%2E/storage/schema.sql")  # listed files only
        assert missing.status_code == 404
        assert missing.json() == {"error": "not_found", "reason": "missing"}
        assert (await client.get("/_demo/nope.js")).json()["error"] == "not_found"
        post = await client.post("/_demo/", json={})
        assert post.status_code == 405
        assert post.json()["error"] == "method_not_allowed"


def test_vendored_pouchdb_is_the_pinned_npm_build() -> None:
    """``couchpoint/static/demo/pouchdb-9.0.0.min.js`` is PouchDB's own browser build, the
    version tests/js pins (run ./scripts/test to install it)."""
    pinned = json.loads((HERE.parent / "js" / "package.json").read_text())["dependencies"]["pouchdb"]
    assert pinned == "9.0.0"
    assert POUCHDB_JS.is_file(), "tests/js/node_modules is missing: run ./scripts/test"
    vendored = (STATIC / "pouchdb-9.0.0.min.js").read_bytes()
    assert hashlib.sha256(vendored).digest() == hashlib.sha256(POUCHDB_JS.read_bytes()).digest()


@pytest.mark.browser
def test_demo_page_live_syncs_in_chromium(tmp_path: Path) -> None:
    from tests.realserver import ServerError, real_server  # see test_browser_sync.couchpoint

    node = _require_tools()
    try:
        with real_server(tmp_path / "data", log_path=tmp_path / "server.log") as server:
            url = server.url
            command = [node, str(HERE / "demo.js"), "--url", url, "--db", "demo-test"]
            done = subprocess.run(command, capture_output=True, text=True, timeout=120)
            docs = httpx.get(f"{url}/demo-test/_all_docs").json()
    except ServerError as exc:
        pytest.fail(str(exc), pytrace=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    assert lines, f"demo.js printed no result (exit {done.returncode}):\n{done.stdout}\n{done.stderr}"
    result = json.loads(lines[-1])
    assert done.returncode == 0 and result["ok"], json.dumps(result, indent=1)
    assert result["title"] == "couchpoint demo: offline-first todos"
    assert result["server_todo"]["title"] == "water the plants"
    assert result["server_todo"]["done"] is True
    assert result["server_todo"]["_rev"].startswith("2-")
    assert result["put_status"] == 201
    assert sorted(result["page_titles"]) == ["water the plants", "written on the server"]
    assert docs["total_rows"] == 2
