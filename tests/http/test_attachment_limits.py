"""Size limits on attachments and requests (BC-09, protocol reference §4.11), in process on
both storage backends, plus one real ``couchpoint serve`` check that a client still
sending an oversized body gets the 413 JSON (not a reset connection).

Limits are set small with ``create_app(storage, max_attachment_size=..., ...)``.  Every
rejected request must leave nothing behind: no new revision, ``update_seq`` unchanged, and
after ``collect_garbage(grace_s=0)`` no blob (file) more than before and no temp file.

Self-contained (own fixtures and helpers), like ``test_attachments.py``.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import hashlib
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from couchpoint import create_app
from couchpoint.config import Settings
from couchpoint.storage import MemoryStorage, SQLiteStorage

BASE_URL = "http://127.0.0.1:5984"
MULTIPART = 'multipart/related; boundary="B"'
ATT_LIMIT = 1000
REQUEST_LIMIT = 20_000
DOC_LIMIT = 2_000
TOO_LARGE = {"error": "too_large", "reason": "the request entity is too large"}


def att_too_large(name: str) -> dict[str, str]:
    return {"error": "attachment_too_large", "reason": name}


def md5(data: bytes) -> str:
    return "md5-" + base64.b64encode(hashlib.md5(data).digest()).decode()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def multipart(doc: Any, parts: list[bytes]) -> bytes:
    """``multipart/related`` with boundary ``B``: the JSON part, then header-less parts."""
    out = [b"--B\r\nContent-Type: application/json\r\n\r\n" + orjson.dumps(doc)]
    out.extend(b"\r\n--B\r\n\r\n" + data for data in parts)
    return b"".join(out) + b"\r\n--B--"


def follows(length: int, **extra: Any) -> dict[str, Any]:
    return {"content_type": "application/octet-stream", "length": length, "follows": True, **extra}


def blob_keys(storage: Any) -> set[str]:
    """Stored blob keys; for SQLite the files under ``attachments_dir`` (no temp files)."""
    if isinstance(storage, MemoryStorage):
        return set(storage._blobs)
    root: Path = storage.attachments_dir
    if not root.is_dir():
        return set()
    temps = [p.name for p in root.iterdir() if p.name.startswith(".")]
    assert not temps, f"temp files left behind: {temps}"
    return {p.name for p in root.glob("??/*")}


class Env:
    def __init__(self, app: Any, storage: Any) -> None:
        self.app = app
        self.storage = storage
        self.client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url=BASE_URL, headers={"Accept": "application/json"}
        )

    async def state(self) -> tuple[Any, ...]:
        """update_seq, doc counts, the ``_changes`` feed (every leaf) and the blobs left
        after collecting garbage with no grace period."""
        info = orjson.loads((await self.client.get("/db")).content)
        feed = orjson.loads((await self.client.get("/db/_changes", params={"style": "all_docs"})).content)
        await self.storage.collect_garbage(grace_s=0)
        return info["update_seq"], info["doc_count"], feed, blob_keys(self.storage)

    async def rejected(
        self, send: Callable[[], Awaitable[httpx.Response]], status: int, body: dict[str, str]
    ) -> httpx.Response:
        """``send`` is answered ``status`` with exactly ``body`` and changes nothing."""
        before = await self.state()
        response = await send()
        assert response.headers["content-type"] == "application/json", response.headers
        assert (response.status_code, orjson.loads(response.content)) == (status, body)
        assert await self.state() == before
        return response


MakeEnv = Callable[..., Awaitable[Env]]


@pytest.fixture(params=["memory", "sqlite"])
async def make_env(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[MakeEnv]:
    envs: list[Env] = []

    async def factory(**overrides: Any) -> Env:
        if request.param == "memory":
            storage: Any = MemoryStorage()
        else:
            (tmp_path / f"s{len(envs)}").mkdir()
            storage = SQLiteStorage(tmp_path / f"s{len(envs)}" / "couchpoint.sqlite3")
        env = Env(create_app(storage, settings=Settings(), **overrides), storage)
        envs.append(env)
        assert (await env.client.put("/db")).status_code == 201
        return env

    yield factory
    for env in envs:
        await env.client.aclose()
        await env.app.state.server.close()


@pytest.fixture
async def env(make_env: MakeEnv) -> Env:
    return await make_env(
        max_attachment_size=ATT_LIMIT, max_request_size=REQUEST_LIMIT, max_document_size=DOC_LIMIT
    )


async def _seed(env: Env) -> str:
    """A doc with an attachment, so updates have something to leave alone; returns its rev."""
    response = await env.client.put("/db/doc/a.bin", content=b"seed")
    assert response.status_code == 201
    return str(response.json()["rev"])


# ---------------------------------------------------------------------------------------
# max_attachment_size


async def test_attachment_put_at_and_over_the_limit(env: Env) -> None:
    """BC-09: an attachment of exactly ``max_attachment_size`` bytes is stored; one byte
    more is ``413 {"error":"attachment_too_large","reason":"<name>"}`` for a new doc and
    for an update, and nothing is kept."""
    rev = await _seed(env)
    ok = await env.client.put(f"/db/doc/ok.bin?rev={rev}", content=os.urandom(ATT_LIMIT))
    assert ok.status_code == 201
    rev = ok.json()["rev"]
    data = os.urandom(ATT_LIMIT + 1)
    await env.rejected(lambda: env.client.put("/db/new/big.bin", content=data), 413, att_too_large("big.bin"))
    await env.rejected(
        lambda: env.client.put(f"/db/doc/dir/big.bin?rev={rev}", content=data),
        413,
        att_too_large("dir/big.bin"),
    )


async def test_limit_is_on_identity_length(env: Env) -> None:
    """The limit counts decoded bytes: a compressible body that gzips far below the limit,
    and a ``Content-Encoding: gzip`` upload that decodes above it, are both 413."""
    text = b"a" * (ATT_LIMIT + 1)
    await env.rejected(
        lambda: env.client.put("/db/t/a.txt", content=text, headers={"Content-Type": "text/plain"}),
        413,
        att_too_large("a.txt"),
    )
    zipped = gzip.compress(text, mtime=0)
    assert len(zipped) < ATT_LIMIT // 10
    await env.rejected(
        lambda: env.client.put("/db/t/a.gz", content=zipped, headers={"Content-Encoding": "gzip"}),
        413,
        att_too_large("a.gz"),
    )


async def test_streamed_upload_stops_at_the_limit(env: Env) -> None:
    """The limit is enforced while the body streams in: the server stops reading right
    after the limit (it does not consume the whole 1 MB body first)."""
    consumed = []

    async def body() -> AsyncIterator[bytes]:
        for i in range(1000):
            consumed.append(i)
            yield os.urandom(1000)

    await env.rejected(lambda: env.client.put("/db/s/a.bin", content=body()), 413, att_too_large("a.bin"))
    assert len(consumed) <= 3, len(consumed)


async def test_inline_attachment_over_the_limit(env: Env) -> None:
    """Inline base64 ``data`` over the limit: 413 ``attachment_too_large`` on a doc PUT, a
    doc POST and ``_bulk_docs`` (interactive and replicated), nothing written."""
    rev = await _seed(env)
    atts = {"big.bin": {"content_type": "application/octet-stream", "data": b64(os.urandom(ATT_LIMIT + 1))}}
    expected = att_too_large("big.bin")
    await env.rejected(lambda: env.client.put("/db/new", json={"_attachments": atts}), 413, expected)
    await env.rejected(
        lambda: env.client.put("/db/doc", json={"_rev": rev, "_attachments": atts}), 413, expected
    )
    await env.rejected(lambda: env.client.post("/db", json={"_id": "p", "_attachments": atts}), 413, expected)
    docs = [{"_id": "small", "v": 1}, {"_id": "b", "_attachments": atts}]
    await env.rejected(lambda: env.client.post("/db/_bulk_docs", json={"docs": docs}), 413, expected)
    replicated = [
        {"_id": "b", "_rev": "1-abc", "_revisions": {"start": 1, "ids": ["abc"]}, "_attachments": atts}
    ]
    await env.rejected(
        lambda: env.client.post("/db/_bulk_docs", json={"docs": replicated, "new_edits": False}),
        413,
        expected,
    )


async def test_multipart_part_over_the_limit(env: Env) -> None:
    """A ``follows`` part over the limit (identity, or gzip decoding above it) in a
    multipart/related PUT, new doc or replicated update: 413 ``attachment_too_large``; the
    other, smaller parts of the same request are not kept either."""
    rev = await _seed(env)
    small, big = os.urandom(100), os.urandom(ATT_LIMIT + 1)
    doc = {"_attachments": {"small.bin": follows(100), "big.bin": follows(len(big))}}
    send = {"headers": {"Content-Type": MULTIPART}}
    await env.rejected(
        lambda: env.client.put("/db/new", content=multipart(doc, [small, big]), **send),
        413,
        att_too_large("big.bin"),
    )
    replicated = {
        "_rev": "2-ff",
        "_revisions": {"start": 2, "ids": ["ff", rev.split("-")[1]]},
        "_attachments": {"a.bin": {"stub": True}, **doc["_attachments"]},
    }
    await env.rejected(
        lambda: env.client.put(
            "/db/doc?new_edits=false", content=multipart(replicated, [small, big]), **send
        ),
        413,
        att_too_large("big.bin"),
    )
    zipped = gzip.compress(b"z" * (ATT_LIMIT + 1), mtime=0)
    gz_doc = {
        "_attachments": {
            "z.txt": follows(ATT_LIMIT + 1, encoding="gzip", encoded_length=len(zipped), digest=md5(zipped))
        }
    }
    await env.rejected(
        lambda: env.client.put("/db/new", content=multipart(gz_doc, [zipped]), **send),
        413,
        att_too_large("z.txt"),
    )


# ---------------------------------------------------------------------------------------
# max_request_size, max_document_size


async def test_request_over_the_limit(make_env: MakeEnv) -> None:
    """BC-09: a body over ``max_request_size`` is ``413 {"error":"too_large","reason":"the
    request entity is too large"}``: a raw attachment PUT (even when the attachment limit
    is higher), a multipart PUT, ``_bulk_docs`` and a JSON doc PUT."""
    # The attachment limit above the request limit, so that too_large is what trips.
    big_env = await make_env(max_attachment_size=REQUEST_LIMIT * 10, max_request_size=REQUEST_LIMIT)
    body = os.urandom(REQUEST_LIMIT + 1)
    await big_env.rejected(lambda: big_env.client.put("/db/r/a.bin", content=body), 413, TOO_LARGE)
    doc = {"_attachments": {"a.bin": follows(len(body))}}
    await big_env.rejected(
        lambda: big_env.client.put(
            "/db/r", content=multipart(doc, [body]), headers={"Content-Type": MULTIPART}
        ),
        413,
        TOO_LARGE,
    )
    docs = [{"_id": f"d{i}", "filler": "x" * 1000} for i in range(25)]
    await big_env.rejected(lambda: big_env.client.post("/db/_bulk_docs", json={"docs": docs}), 413, TOO_LARGE)
    await big_env.rejected(
        lambda: big_env.client.put("/db/r", json={"filler": "x" * REQUEST_LIMIT}), 413, TOO_LARGE
    )


async def test_document_over_the_limit(env: Env) -> None:
    """BC-09 / §4.11: a doc body over ``max_document_size`` is ``413
    {"error":"document_too_large","reason":"<docid>"}``; attachment bodies do not count
    toward it (a small doc with a 900-byte inline attachment is fine)."""
    await env.rejected(
        lambda: env.client.put("/db/big", json={"filler": "x" * DOC_LIMIT}),
        413,
        {"error": "document_too_large", "reason": "big"},
    )
    atts = {"a.bin": {"content_type": "application/octet-stream", "data": b64(os.urandom(900))}}
    big_atts = {**atts, "b.bin": {"content_type": "application/octet-stream", "data": b64(os.urandom(900))}}
    assert len(orjson.dumps({"_attachments": big_atts})) > DOC_LIMIT
    response = await env.client.put("/db/fine", json={"v": 1, "_attachments": big_atts})
    assert response.status_code == 201, response.text


# ---------------------------------------------------------------------------------------
# a real server


@contextlib.contextmanager
def _serve(tmp_path: Path, **limits: int) -> Iterator[str]:
    """``couchpoint serve`` with ``COUCHPOINT_<LIMIT>`` settings; yields its URL."""
    from tests.realserver import _stop, _wait_until_up, free_port, serve_command

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("COUCHPOINT_")}
    env.update({f"COUCHPOINT_{k.upper()}": str(v) for k, v in limits.items()})
    log = (tmp_path / "server.log").open("wb")
    process = subprocess.Popen(
        serve_command(port, tmp_path / "data", log_level="warning"),
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_until_up(process, url, 30.0)
        yield url
    finally:
        _stop(process)
        log.close()


def test_real_server_answers_413_to_a_client_still_sending(tmp_path: Path) -> None:
    """BC-09: through uvicorn, a client sending a 5 MB attachment (limit 1 MB), a 5 MB
    multipart PUT or a 5 MB ``_bulk_docs`` (request limit 3 MB) reads the 413 JSON
    (the CouchDB replicator skips such docs; a reset connection would crash its job), on
    the same keep-alive client several times; nothing is stored."""
    with _serve(tmp_path, max_attachment_size=1_000_000, max_request_size=3_000_000) as url:
        data = os.urandom(5_000_000)
        with httpx.Client(base_url=url, timeout=60.0, headers={"Accept": "application/json"}) as client:
            assert client.put("/db").status_code == 201
            for _ in range(2):
                response = client.put("/db/x/a.bin", content=data)
                assert (response.status_code, response.json()) == (413, att_too_large("a.bin"))
                response = client.put(
                    "/db/m",
                    content=multipart({"_attachments": {"a.bin": follows(len(data))}}, [data]),
                    headers={"Content-Type": MULTIPART},
                )
                # Either 413 shape: the part trips the attachment limit, the drain of the
                # rest of the body then the request limit.
                assert response.status_code == 413
                assert response.json() in (TOO_LARGE, att_too_large("a.bin"))
                response = client.post(
                    "/db/_bulk_docs",
                    json={"docs": [{"_id": "b", "_attachments": {"a": {"data": b64(data)}}}]},
                )
                assert (response.status_code, response.json()) == (413, TOO_LARGE)
            response = client.put("/db/x/a.bin", content=data[:1000])
            assert response.status_code == 201
            assert client.get("/db").json()["update_seq"] == 1
    blobs = [p for p in (tmp_path / "data" / "couchpoint-attachments").rglob("*") if p.is_file()]
    assert [p.name for p in blobs] == [hashlib.sha256(data[:1000]).hexdigest()]


# ---------------------------------------------------------------------------------------
# the benchmark (bench/attachments.py), as a smoke run


def test_bench_attachments_smoke() -> None:
    """``bench/attachments.py --size 20MiB --json`` starts a real server, streams the
    attachment up and down and reports throughput and the server's RSS growth (the
    figures themselves are not checked here; docs/benchmarks.md has the 1 GiB run)."""
    script = Path(__file__).resolve().parents[2] / "bench" / "attachments.py"
    env = {k: v for k, v in os.environ.items() if not k.startswith("COUCHPOINT_")}
    done = subprocess.run(
        [sys.executable, str(script), "--size", "20MiB", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["size_bytes"] == 20 * 1024 * 1024 and report["identical"] is True
    for direction in ("put", "get"):
        assert report[direction]["seconds"] > 0 and report[direction]["mib_per_s"] > 0
        assert report[direction]["server_peak_rss_growth_mib"] >= 0
    assert report["server_baseline_rss_mib"] > 0 and report["environment"]["uvicorn"]
