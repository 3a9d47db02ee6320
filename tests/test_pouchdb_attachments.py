"""PouchDB 9 (Node, memory adapter) pushing and pulling attachments through a real
``couchpoint serve`` (SQLite, blob files beside it): issue 3's first acceptance point.

``tests/js/attachments.js`` (see its header) makes client A push docs with binary
attachments of 1 KB, 1 MB and 50 MB, a compressible text attachment (stored gzip) and a doc
with two attachments; client B pulls; A changes two bodies only and two attachment bodies;
B pulls again.  The script checks the bytes on every side with ``getAttachment`` and SHA-256
and returns the log of every request PouchDB made (method, path, status, phase).

This test then checks, independently of PouchDB:

* every attachment read back with httpx (streamed, hashed on the fly) has the SHA-256
  client A wrote, for the current and the previous revision;
* the text attachment is stored gzip: served decoded by default, as gzip with
  ``Accept-Encoding: gzip`` (those bytes are what zlib level 8 makes of the text, and
  ``digest`` is their MD5), and round-trips byte-identical through PouchDB;
* B's second pull fetched the bodies of the two changed attachments and nothing else
  (no GET of an unchanged attachment, with or without ``?rev=``), and the JS request log
  matches the server's own access log;
* equal bodies sent again (PouchDB's push re-sends every attachment inline) are stored
  once: one blob file per distinct body.

Run: ``.venv/bin/pytest tests/test_pouchdb_attachments.py -q`` (needs Node 20+ and
``tests/js/node_modules``; ``./scripts/test`` installs them).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import zlib
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote

import httpx
import pytest

if TYPE_CHECKING:
    from tests.realserver import RealServer

pytest_plugins = ("tests.realserver",)

pytestmark = pytest.mark.pouchdb

JS_DIR = Path(__file__).resolve().parent / "js"
SCENARIO_TIMEOUT = 300.0
BIG_MB = 50
DB = "attachments"
CHANGED = {("bin-1m", "data.bin"), ("multi", "change.bin")}
UNCHANGED = {("bin-1k", "data.bin"), ("bin-big", "data.bin"), ("multi", "keep.bin")}
TEXT_DOC = "text"

Json = dict[str, Any]


def _node() -> str:
    for package in ("pouchdb", "pouchdb-adapter-memory"):
        if not (JS_DIR / "node_modules" / package / "package.json").is_file():
            pytest.fail(
                f"tests/js/node_modules lacks {package}: run ./scripts/test (npm ci in tests/js)",
                pytrace=False,
            )
    node = shutil.which("node")
    if node is None:
        pytest.fail("`node` is not on PATH (the PouchDB tests need Node.js 20+)", pytrace=False)
    return node


def _run(server: RealServer, *args: str) -> Json:
    command = [_node(), str(JS_DIR / "attachments.js"), "--url", server.url, "--db", DB, *args]
    env = {k: v for k, v in os.environ.items() if k not in ("POUCHDB_SERVER_QUIRKS", "PDB_HTTP_LOG")}
    try:
        done = subprocess.run(
            command, cwd=JS_DIR, env=env, capture_output=True, text=True, timeout=SCENARIO_TIMEOUT
        )
    except subprocess.TimeoutExpired as exc:
        stderr = exc.stderr.decode("utf-8", "replace") if isinstance(exc.stderr, bytes) else exc.stderr or ""
        pytest.fail(
            f"attachments.js did not finish within {SCENARIO_TIMEOUT:g} s\n{stderr[-6000:]}\n"
            f"--- server log ---\n{server.log_tail()}",
            pytrace=False,
        )
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    try:
        result: Json = json.loads(lines[-1])
    except (IndexError, ValueError):
        result = {"ok": False, "error": "no JSON result on stdout", "stdout": done.stdout[-2000:]}
    if done.returncode != 0 or result.get("ok") is not True:
        pytest.fail(
            f"attachments.js failed (exit {done.returncode}): {result.get('error')}\n"
            f"details: {json.dumps(result.get('details'), indent=1)[:6000]}\n"
            f"--- node stderr ---\n{done.stderr[-6000:]}\n--- server log ---\n{server.log_tail()}",
            pytrace=False,
        )
    assert result["pouchdb_version"] == "9.0.0", "tests/js/node_modules is stale: run ./scripts/test"
    return result


def _att_path(doc_id: str, name: str) -> str:
    """The path PouchDB uses (``encodeAttachmentId``: each ``/``-separated piece encoded)."""
    return f"/{DB}/{quote(doc_id, safe='')}/" + "/".join(quote(p, safe="") for p in name.split("/"))


def _sha256_of_get(client: httpx.Client, path: str, **params: str) -> tuple[str, int, httpx.Headers]:
    """SHA-256 and length of an attachment body, streamed and hashed chunk by chunk."""
    digest = hashlib.sha256()
    size = 0
    with client.stream("GET", path, params=params, headers={"Accept-Encoding": "identity"}) as response:
        assert response.status_code == 200, (path, response.status_code, response.read())
        for chunk in response.iter_raw():
            digest.update(chunk)
            size += len(chunk)
        return digest.hexdigest(), size, response.headers


def _split(url: str) -> tuple[str, str, bool]:
    """``/db/doc/a/b.txt?rev=..`` → (doc id, attachment name, has ``rev``)."""
    path, _, query = url.partition("?")
    pieces = [unquote(p) for p in path.split("/")[2:]]
    return pieces[0], "/".join(pieces[1:]), "rev=" in query


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from tests.realserver import ServerError, real_server

    root = tmp_path_factory.mktemp("pouchdb-attachments")
    try:
        with real_server(root / "data", log_path=root / "server.log") as server:
            with httpx.Client(base_url=server.url, timeout=60.0) as client:
                assert client.put(f"/{DB}").status_code == 201
            result = _run(server, "--big-mb", str(BIG_MB))
            # The access log as the scenario left it (before this module's own reads).
            result["server_log"] = server.log_path.read_text(encoding="utf-8", errors="replace")
            yield server, result
    except ServerError as exc:
        pytest.fail(str(exc), pytrace=False)


def test_bytes_identical_everywhere(scenario: Any) -> None:
    """1 KB, 1 MB and 50 MB binary bodies, the text body and both bodies of ``multi``:
    what the server serves (httpx, streamed) has the SHA-256 client A wrote, for the
    current revision and for the first one; lengths and content types as stored."""
    server, result = scenario
    assert result["big_bytes"] == BIG_MB * 1024 * 1024
    first, second, revs = result["first"], result["second"], result["revs"]
    with httpx.Client(base_url=server.url, timeout=120.0) as client:
        for doc_id, atts in second.items():
            doc = client.get(f"/{DB}/{quote(doc_id, safe='')}", headers={"Accept": "application/json"}).json()
            assert doc["_rev"] == revs[doc_id]
            assert set(doc["_attachments"]) == set(atts)
            for name, sha in atts.items():
                got, size, headers = _sha256_of_get(client, _att_path(doc_id, name))
                assert got == sha, f"{doc_id}/{name}: bytes differ"
                assert size == doc["_attachments"][name]["length"] == int(headers["content-length"])
                assert headers["content-type"] == doc["_attachments"][name]["content_type"]
        # The previous revision's bodies are still served (``?rev=``: what PouchDB asks for).
        for doc_id, atts in first.items():
            rev1 = client.get(
                f"/{DB}/{quote(doc_id, safe='')}",
                params={"revs": "true"},
                headers={"Accept": "application/json"},
            ).json()["_revisions"]
            rev = f"1-{rev1['ids'][-1]}"
            for name, sha in atts.items():
                got, _, _ = _sha256_of_get(client, _att_path(doc_id, name), rev=rev)
                assert got == sha, f"{doc_id}/{name}?rev={rev}: bytes differ"
    assert first["bin-1m"]["data.bin"] != second["bin-1m"]["data.bin"]
    assert first["multi"]["change.bin"] != second["multi"]["change.bin"]
    for doc_id, name in UNCHANGED:
        assert first[doc_id][name] == second[doc_id][name]


def test_text_attachment_stored_gzip_round_trips(scenario: Any) -> None:
    """The ``text/plain`` attachment (name with ``/``, ``+`` and a space) is stored gzip:
    ``att_encoding_info`` shows it, ``Accept-Encoding: gzip`` gets the stored bytes (zlib
    level 8 of the text, as CouchDB writes them; ``digest`` = their MD5), and without it
    the decoded text, byte-identical to what PouchDB wrote and read back."""
    server, result = scenario
    name = result["text_name"]
    sha = result["first"][TEXT_DOC][name]
    assert result["second"][TEXT_DOC][name] == sha
    with httpx.Client(base_url=server.url, timeout=60.0) as client:
        doc = client.get(
            f"/{DB}/{TEXT_DOC}", params={"att_encoding_info": "true"}, headers={"Accept": "application/json"}
        ).json()
        meta = doc["_attachments"][name]
        assert meta["encoding"] == "gzip" and meta["length"] == result["text_length"]
        assert meta["encoded_length"] < meta["length"] // 5
        with client.stream("GET", _att_path(TEXT_DOC, name), headers={"Accept-Encoding": "gzip"}) as response:
            assert response.status_code == 200
            assert response.headers["content-encoding"] == "gzip"
            assert response.headers["content-type"] == "text/plain"
            stored = b"".join(response.iter_raw())
        assert len(stored) == meta["encoded_length"] == int(response.headers["content-length"])
        assert meta["digest"] == "md5-" + base64.b64encode(hashlib.md5(stored).digest()).decode()
        text = zlib.decompress(stored, 31)
        assert hashlib.sha256(text).hexdigest() == sha
        deflater = zlib.compressobj(8, zlib.DEFLATED, 31)
        assert deflater.compress(text) + deflater.flush() == stored, "not zlib level 8 (CouchDB's bytes)"
        plain, size, headers = _sha256_of_get(client, _att_path(TEXT_DOC, name))
        assert plain == sha and size == meta["length"] and "content-encoding" not in headers


def test_second_client_fetches_only_changed_attachments(scenario: Any) -> None:
    """B's first pull GETs every attachment once with ``?rev=<the rev it replicates>``;
    its second pull GETs exactly the two changed bodies (PouchDB re-uses its local copy of
    an attachment whose digest did not change, and asks for a changed one without
    ``?rev=``), never one of the unchanged ones, and moves only their bytes."""
    _, result = scenario
    gets = result["attachment_gets"]
    first_pull = [_split(u) for u in gets["pull1"]]
    expected_all = {(d, n) for d, atts in result["first"].items() for n in atts}
    assert Counter((d, n) for d, n, _ in first_pull) == Counter(expected_all)
    assert all(has_rev for _, _, has_rev in first_pull)
    for url in gets["pull1"]:
        assert re.search(r"[?&]rev=1-[0-9a-f]{32}(&|$)", url), url

    second_pull = [_split(u) for u in gets["pull2"]]
    assert Counter((d, n) for d, n, _ in second_pull) == Counter(CHANGED), gets["pull2"]
    fetched = {(d, n) for d, n, _ in second_pull}
    assert not fetched & (UNCHANGED | {(TEXT_DOC, result["text_name"])})
    with_rev = [(d, n) for d, n, has_rev in second_pull if has_rev]
    assert set(with_rev) <= CHANGED

    pull2 = [r for r in result["requests"] if r["phase"] == "pull2"]
    att_bytes = sum(
        r.get("response_bytes", 0) for r in pull2 if r["method"] == "GET" and r["url"] in gets["pull2"]
    )
    assert att_bytes == (1 << 20) + 64 * 1024, pull2
    # Nothing in the second pull carried attachment bodies another way.
    for request in pull2:
        assert "attachments=true" not in request["url"] and "open_revs" not in request["url"], request
    assert sum(r.get("response_bytes", 0) for r in pull2) < (1 << 20) + 64 * 1024 + 64 * 1024


def test_request_log_matches_server_access_log(scenario: Any) -> None:
    """The JS request log is complete: per attachment, the server's access log shows as
    many GETs as PouchDB's fetch recorded (over the whole run, verification reads
    included)."""
    _, result = scenario
    js_counts: Counter[tuple[str, str]] = Counter()
    prefix = f"/{DB}/"
    for request in result["requests"]:
        path = request["url"].split("?")[0]
        if request["method"] == "GET" and path.startswith(prefix) and "/" in path[len(prefix) :]:
            doc_id, name, _ = _split(request["url"])
            if not doc_id.startswith("_"):
                js_counts[(doc_id, name)] += 1
    log = result["server_log"]
    server_counts: Counter[tuple[str, str]] = Counter()
    for match in re.finditer(r'"GET (/[^ ?"]+)(?:\?[^ "]*)? HTTP/1\.1" 200', log):
        path = match.group(1)
        if path.startswith(prefix) and "/" in path[len(prefix) :]:
            doc_id, name, _ = _split(path)
            if not doc_id.startswith("_"):
                server_counts[(doc_id, name)] += 1
    assert js_counts and js_counts == server_counts


def test_equal_bodies_stored_once(scenario: Any) -> None:
    """PouchDB's second push re-sent the unchanged bodies inline; content addressing keeps
    one blob file per distinct body (8: 1 KB, 1 MB twice, 50 MB, text, keep, change twice)."""
    server, result = scenario
    root = server.data_dir / "couchpoint-attachments"
    files = [p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")]
    assert len(files) == 8, sorted(p.name for p in files)
    for path in files:
        assert path.parent.name == path.name[:2]
        assert hashlib.sha256(path.read_bytes()).hexdigest() == path.name
    sizes = sorted(p.stat().st_size for p in files)
    assert sizes[-1] == BIG_MB * 1024 * 1024


def test_runtime(scenario: Any) -> None:
    """50 MB push plus pull stays well under a minute (the figures are in the result's
    ``timings``/``phase_ms`` and in docs/benchmarks.md)."""
    _, result = scenario
    timings = result["timings"]
    assert timings["push1_ms"] + timings["pull1_ms"] < 60_000, timings
