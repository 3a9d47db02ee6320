"""Attachments over HTTP, in process (``httpx.ASGITransport``), on both storage backends.

Cases from ``shared/cases/protocol-cases.md`` (BC-05 names, BC-07 gzip in multipart, BC-08
``open_revs`` framing) and the protocol reference (§4.7 stubs and digests, §7.5 multipart
out, §7.6 multipart in, §9 the attachment API, §3.12 compaction).  Every test runs on
:class:`MemoryStorage` and on :class:`SQLiteStorage` (blob files beside the SQLite file).

Rejected writes are checked to leave nothing behind: :func:`unchanged` snapshots what a
client can read (db info, ``_changes``, every leaf with its attachment bodies) and the
stored blobs (after ``collect_garbage(grace_s=0)``) before and after.

The module is self-contained (its own fixtures and helpers) so it runs with or without
the shared ``tests/http`` conftest.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import os
import re
import time
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import orjson
import pytest

from couchpoint import create_app
from couchpoint.config import Settings
from couchpoint.storage import MemoryStorage, SQLiteStorage

BASE_URL = "http://127.0.0.1:5984"
MULTIPART = 'multipart/related; boundary="B"'
IDENTITY = {"Accept-Encoding": "identity"}
MISSING_ATT = {"error": "not_found", "reason": "Document is missing attachment"}
RANGE_416 = {"error": "requested_range_not_satisfiable", "reason": "Requested range not satisfiable"}
MD5_MISMATCH = {"error": "content_md5_mismatch", "reason": "Possible message corruption."}


# ---------------------------------------------------------------------------------------
# helpers


def md5(data: bytes) -> str:
    """CouchDB's digest form: ``md5-<base64>``."""
    return "md5-" + base64.b64encode(hashlib.md5(data).digest()).decode()


def gzip8(data: bytes) -> bytes:
    """What CouchDB (and couchpoint) store for a compressible body: zlib level 8, gzip."""
    deflater = zlib.compressobj(8, zlib.DEFLATED, 31)
    return deflater.compress(data) + deflater.flush()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def att_path(db: str, doc_id: str, name: str) -> str:
    """PouchDB's attachment URL (``encodeAttachmentId``: each ``/`` piece encoded)."""
    return f"/{db}/{quote(doc_id, safe='')}/" + "/".join(quote(p, safe="") for p in name.split("/"))


def multipart(doc: Any, parts: list[tuple[list[str], bytes]] = (), boundary: str = "B") -> bytes:  # type: ignore[assignment]
    """A ``multipart/related`` body as the CouchDB replicator writes it (§7.6): the JSON
    part, then each ``(header lines, bytes)`` part, then ``--B--`` (no trailing CRLF)."""
    b = boundary.encode()
    out = [b"--" + b + b"\r\nContent-Type: application/json\r\n\r\n" + orjson.dumps(doc)]
    for headers, data in parts:
        out.append(b"\r\n--" + b + b"\r\n" + b"".join(h.encode() + b"\r\n" for h in headers) + b"\r\n" + data)
    return b"".join(out) + b"\r\n--" + b + b"--"


def att_part(name: str, data: bytes, content_type: str = "application/octet-stream", gz: bool = False):
    headers = [
        f'Content-Disposition: attachment; filename="{name}"',
        f"Content-Type: {content_type}",
        f"Content-Length: {len(data)}",
    ]
    if gz:
        headers.append("Content-Encoding: gzip")
    return headers, data


@dataclass
class MimePart:
    headers: list[tuple[str, str]]
    body: bytes


def boundary_of(content_type: str) -> str:
    match = re.fullmatch(r'multipart/(?:mixed|related); boundary="([^"]+)"', content_type)
    assert match, f"Content-Type {content_type!r} is not multipart with a quoted boundary"
    return match.group(1)


def parse_mime(body: bytes, boundary: str) -> list[MimePart]:
    """Strict parser for couchpoint's multipart bodies: no preamble, CRLF everywhere,
    ``--B--`` at the very end (no CRLF after it, as CouchDB)."""
    delimiter = b"--" + boundary.encode()
    assert body.startswith(delimiter + b"\r\n"), body[:100]
    assert body.endswith(b"\r\n" + delimiter + b"--"), body[-100:]
    inner = body[len(delimiter) + 2 : -(len(delimiter) + 4)]
    parts = []
    for piece in inner.split(b"\r\n" + delimiter + b"\r\n"):
        head, sep, content = piece.partition(b"\r\n\r\n")
        assert sep, piece[:200]
        headers = [tuple(line.split(": ", 1)) for line in head.decode().split("\r\n")]
        assert all(len(h) == 2 for h in headers), head
        parts.append(MimePart([(h[0], h[1]) for h in headers], content))
    return parts


async def raw_get(client: httpx.AsyncClient, path: str, **headers: str) -> tuple[httpx.Response, bytes]:
    """GET without letting httpx decode ``Content-Encoding``: the bytes as sent."""
    async with client.stream("GET", path, headers=headers) as response:
        data = b"".join([chunk async for chunk in response.aiter_raw()])
    return response, data


def body_json(response: httpx.Response) -> Any:
    assert response.headers["content-type"] == "application/json", response.headers
    return orjson.loads(response.content)


def check(response: httpx.Response, status: int, body: Any = None) -> Any:
    """``status`` and, when given, exactly ``body``; returns the JSON body."""
    got = body_json(response)
    where = f"{response.request.method} {response.request.url}"
    assert response.status_code == status, f"{where}: {response.status_code} {got}"
    if body is not None:
        assert got == body, f"{where}: {got}"
    return got


# ---------------------------------------------------------------------------------------
# fixtures


class Env:
    """One app on fresh storage, with an in-process client."""

    def __init__(self, app: Any, storage: Any) -> None:
        self.app = app
        self.storage = storage
        self.client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url=BASE_URL,
            headers={"Accept": "application/json"},
        )

    async def blobs(self) -> set[str]:
        """Keys of the stored blobs, after deleting every unreferenced one."""
        await self.storage.collect_garbage(grace_s=0)
        return blob_keys(self.storage)

    def age_blobs(self, seconds: float) -> None:
        """Make every stored blob ``seconds`` older (for the compaction grace period)."""
        age_blobs(self.storage, seconds)


def blob_keys(storage: Any) -> set[str]:
    if isinstance(storage, MemoryStorage):
        return set(storage._blobs)
    root: Path = storage.attachments_dir
    if not root.is_dir():
        return set()
    temps = [p.name for p in root.iterdir() if p.name.startswith(".")]
    assert not temps, f"temp files left behind: {temps}"
    keys = set()
    for sub in root.iterdir():
        for path in sub.iterdir():
            assert path.parent.name == path.name[:2]
            keys.add(path.name)
    return keys


def age_blobs(storage: Any, seconds: float) -> None:
    if isinstance(storage, MemoryStorage):
        storage._blobs = {k: (data, born - seconds) for k, (data, born) in storage._blobs.items()}
        return
    root: Path = storage.attachments_dir
    for path in root.glob("??/*"):
        stat = path.stat()
        os.utime(path, (stat.st_atime - seconds, stat.st_mtime - seconds))


MakeEnv = Callable[..., Awaitable[Env]]


@pytest.fixture(params=["memory", "sqlite"])
async def make_env(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[MakeEnv]:
    envs: list[Env] = []

    async def factory(**overrides: Any) -> Env:
        if request.param == "memory":
            storage: Any = MemoryStorage()
        else:
            storage = SQLiteStorage(tmp_path / f"s{len(envs)}" / "couchpoint.sqlite3")
            storage.path.parent.mkdir()
        env = Env(create_app(storage=storage, settings=Settings(), **overrides), storage)
        envs.append(env)
        check(await env.client.put("/db"), 201, {"ok": True})
        return env

    yield factory
    for env in envs:
        await env.client.aclose()
        await env.app.state.server.close()


@pytest.fixture
async def env(make_env: MakeEnv) -> Env:
    return await make_env()


async def snapshot(env: Env, db: str = "db") -> dict[str, Any]:
    """Everything a client can read of ``db``: info (update_seq, counts), ``_changes``
    with every leaf, each leaf's body, and the bytes of each leaf's attachments."""
    client = env.client
    info = body_json(await client.get(f"/{db}"))
    info.pop("sizes", None)
    out: dict[str, Any] = {"info": info}
    feed = body_json(await client.get(f"/{db}/_changes", params={"style": "all_docs"}))
    out["changes"] = feed
    for row in feed["results"]:
        leaves = body_json(
            await client.get(
                f"/{db}/{quote(row['id'], safe='')}",
                params={"open_revs": "all", "revs": "true", "att_encoding_info": "true"},
            )
        )
        for leaf in leaves:
            doc = leaf["ok"]
            bodies = {}
            for name in doc.get("_attachments", {}):
                response, data = await raw_get(
                    client, att_path(db, doc["_id"], name) + f"?rev={doc['_rev']}", **IDENTITY
                )
                bodies[name] = (response.status_code, hashlib.sha256(data).hexdigest())
            out[f"{doc['_id']} {doc['_rev']}"] = (doc, bodies)
    return out


async def unchanged(env: Env, send: Callable[[], Awaitable[httpx.Response]]) -> httpx.Response:
    """Run ``send`` and prove it changed nothing: same snapshot, same blobs (after
    collecting garbage with no grace period), no temp files."""
    before, blobs = await snapshot(env), await env.blobs()
    response = await send()
    assert response.status_code < 500, response.text
    assert await snapshot(env) == before
    assert await env.blobs() == blobs
    return response


async def put_att(
    env: Env, doc_id: str, name: str, data: bytes, rev: str | None = None, content_type: str | None = None
) -> str:
    headers = {"Content-Type": content_type} if content_type else {}
    params = {"rev": rev} if rev else None
    response = await env.client.put(
        att_path("db", doc_id, name), content=data, headers=headers, params=params
    )
    body = check(response, 201)
    assert body["ok"] is True and body["id"] == doc_id
    return str(body["rev"])


async def put_doc(env: Env, doc_id: str, doc: dict[str, Any], **params: str) -> str:
    body = check(await env.client.put(f"/db/{quote(doc_id, safe='')}", json=doc, params=params or None), 201)
    return str(body["rev"])


async def get_doc(env: Env, doc_id: str, **params: str) -> dict[str, Any]:
    response = await env.client.get(f"/db/{quote(doc_id, safe='')}", params=params or None)
    result: dict[str, Any] = check(response, 200)
    return result


async def get_att(env: Env, doc_id: str, name: str, **params: str) -> bytes:
    response = await env.client.get(att_path("db", doc_id, name), params=params or None, headers=IDENTITY)
    assert response.status_code == 200, response.text
    return response.content


# ---------------------------------------------------------------------------------------
# BC-05: names


async def test_bc05_name_with_slash_plus_and_space(env: Env) -> None:
    """BC-05: ``PUT /db/doc1/dir/a%2Bb%20c.txt`` stores ``dir/a+b c.txt``; it is served at
    that path and at ``dir%2Fa%2Bb%20c.txt``; the stub is exact (text/plain is stored gzip,
    so ``digest`` is the MD5 of the level-8 gzip bytes, §4.7)."""
    rev1 = await put_doc(env, "doc1", {})
    response = await env.client.put(
        f"/db/doc1/dir/a%2Bb%20c.txt?rev={rev1}", content=b"hi", headers={"Content-Type": "text/plain"}
    )
    rev2 = check(response, 201)["rev"]
    assert rev2.startswith("2-")
    assert response.headers["location"] == f"{BASE_URL}/db/doc1/dir/a%2Bb%20c.txt"
    for path in ("/db/doc1/dir%2Fa%2Bb%20c.txt", "/db/doc1/dir/a%2Bb%20c.txt"):
        got = await env.client.get(path, headers=IDENTITY)
        assert got.status_code == 200 and got.content == b"hi"
        assert got.headers["content-type"] == "text/plain"
    doc = await get_doc(env, "doc1")
    assert doc["_attachments"] == {
        "dir/a+b c.txt": {
            "content_type": "text/plain",
            "revpos": 2,
            "digest": md5(gzip8(b"hi")),
            "length": 2,
            "stub": True,
        }
    }
    rev3 = check(await env.client.put(f"/db/doc1/c%3D1%3Fd%3D2?rev={rev2}", content=b"x"), 201)["rev"]
    assert await get_att(env, "doc1", "c=1?d=2") == b"x"
    doc = await get_doc(env, "doc1")
    assert doc["_rev"] == rev3 and set(doc["_attachments"]) == {"dir/a+b c.txt", "c=1?d=2"}
    assert doc["_attachments"]["c=1?d=2"] == {
        "content_type": "application/octet-stream",
        "revpos": 3,
        "digest": md5(b"x"),
        "length": 1,
        "stub": True,
    }


NAMES = [
    "a b.txt",
    "a+b",
    "c=1?d=2",
    "dir/sub/file.bin",
    "фото.jpg",
    "日本/語 1.txt",
    "emoji 😀.bin",
    "%41.txt",
    "a#b;c&d",
    "dir/_inner",
    "trailing.",
]


@pytest.mark.parametrize("name", NAMES)
async def test_bc05_names_round_trip(env: Env, name: str) -> None:
    """BC-05: any UTF-8 name not starting with ``_`` (``/``, ``+``, spaces, ``=``, ``?``,
    ``#``, ``%``, unicode): PUT and GET at PouchDB's URL, GET with every ``/`` encoded too,
    and the name is the ``_attachments`` key verbatim, also in ``_bulk_get`` and inline."""
    data = name.encode() * 3
    rev = await put_att(env, "doc", name, data)
    assert await get_att(env, "doc", name) == data
    encoded_slashes = f"/db/doc/{quote(name, safe='')}"
    got = await env.client.get(encoded_slashes, headers=IDENTITY)
    assert got.status_code == 200 and got.content == data
    doc = await get_doc(env, "doc", attachments="true")
    assert list(doc["_attachments"]) == [name]
    assert base64.b64decode(doc["_attachments"][name]["data"]) == data
    bulk = check(await env.client.post("/db/_bulk_get", json={"docs": [{"id": "doc", "rev": rev}]}), 200)
    assert list(bulk["results"][0]["docs"][0]["ok"]["_attachments"]) == [name]


async def test_bc05_raw_plus_in_path_is_kept(env: Env) -> None:
    """BC-05/BC-01: a raw ``+`` in the attachment path stays ``+`` (the default
    ``decode_plus_to_space=false``)."""
    await put_att(env, "doc", "a+b c", b"raw", content_type="application/octet-stream")
    got = await env.client.get("/db/doc/a+b%20c", headers=IDENTITY)
    assert got.status_code == 200 and got.content == b"raw"
    assert list((await get_doc(env, "doc"))["_attachments"]) == ["a+b c"]


@pytest.mark.parametrize("name", ["_secret", "_", "_dir/x"])
async def test_bc05_leading_underscore_rejected_everywhere(env: Env, name: str) -> None:
    """BC-05 / §4.7: a name starting with ``_`` is 400 ``bad_request`` "Attachment name
    '<name>' starts with prohibited character '_'" on an attachment PUT, inline in a doc
    PUT, in ``_bulk_docs`` and in a multipart/related PUT; nothing is stored."""
    reason = {
        "error": "bad_request",
        "reason": f"Attachment name '{name}' starts with prohibited character '_'",
    }
    rev = await put_doc(env, "doc", {"v": 1})
    inline = {"_attachments": {name: {"content_type": "text/plain", "data": b64(b"hi")}}}
    sends = [
        lambda: env.client.put(att_path("db", "doc", name), params={"rev": rev}, content=b"hi"),
        lambda: env.client.put(att_path("db", "new", name), content=b"hi"),
        lambda: env.client.put("/db/new", json=inline),
        lambda: env.client.put("/db/doc", json={"_rev": rev, **inline}),
        lambda: env.client.post("/db/_bulk_docs", json={"docs": [{"_id": "new", **inline}]}),
        lambda: env.client.put(
            "/db/new",
            content=multipart(
                {"_attachments": {name: {"content_type": "text/plain", "length": 2, "follows": True}}},
                [att_part(name, b"hi")],
            ),
            headers={"Content-Type": MULTIPART},
        ),
    ]
    for send in sends:
        check(await unchanged(env, send), 400, reason)


async def test_bc05_name_not_utf8_is_400(env: Env) -> None:
    """A name that is not UTF-8 after percent-decoding is a 400, and stores nothing."""
    response = await unchanged(env, lambda: env.client.put("/db/doc/%FF%FE.bin", content=b"x"))
    assert response.status_code == 400


# ---------------------------------------------------------------------------------------
# BC-07: gzip in multipart; gzip rules


TEXT_1000 = b"".join(b"line %04d of a compressible text body\n" % i for i in range(40))[:1000]


async def test_bc07_gzip_multipart_upload_and_every_get(env: Env) -> None:
    """BC-07: the CouchDB replicator's multipart PUT with a gzip part (``encoding``,
    ``encoded_length``, digest of the gzip bytes; here made by another compressor, level
    9) is stored as sent; GET without gzip gets the 1000 decoded bytes, with gzip the
    stored bytes and ``Content-Encoding: gzip``; same ETag; ``att_encoding_info`` shows the
    fields and the digest as sent; ``attachments=true`` gives base64 of decoded bytes."""
    gz = gzip.compress(TEXT_1000, compresslevel=9, mtime=0)
    assert gz != gzip8(TEXT_1000)  # proves the bytes are kept, not recompressed
    entry = {
        "content_type": "text/plain",
        "revpos": 1,
        "digest": md5(gz),
        "length": 1000,
        "follows": True,
        "encoding": "gzip",
        "encoded_length": len(gz),
    }
    doc = {
        "_id": "d",
        "_rev": "1-abc",
        "_revisions": {"start": 1, "ids": ["abc"]},
        "_attachments": {"t.txt": entry},
    }
    response = await env.client.put(
        "/db/d?new_edits=false",
        content=multipart(doc, [att_part("t.txt", gz, "text/plain", gz=True)]),
        headers={"Content-Type": MULTIPART},
    )
    check(response, 201, {"ok": True, "id": "d", "rev": "1-abc"})
    etag = f'"{md5(gz)[4:]}"'

    plain = await env.client.get("/db/d/t.txt", headers=IDENTITY)
    assert plain.status_code == 200 and plain.content == TEXT_1000
    assert plain.headers["content-length"] == "1000" and "content-encoding" not in plain.headers
    assert plain.headers["etag"] == etag and plain.headers["content-type"] == "text/plain"
    assert plain.headers["accept-ranges"] == "none"

    zipped, raw = await raw_get(env.client, "/db/d/t.txt", **{"Accept-Encoding": "gzip"})
    assert zipped.status_code == 200 and raw == gz
    assert zipped.headers["content-encoding"] == "gzip"
    assert zipped.headers["content-length"] == str(len(gz)) and zipped.headers["etag"] == etag

    for accept, gzipped in [
        ("gzip;q=0", False),
        ("deflate, gzip", True),
        ("*", True),
        ("identity", False),
        ("br", False),
        ("GZIP", True),
    ]:
        response, data = await raw_get(env.client, "/db/d/t.txt", **{"Accept-Encoding": accept})
        assert (response.headers.get("content-encoding") == "gzip") is gzipped, accept
        assert data == (gz if gzipped else TEXT_1000), accept

    head = await env.client.head("/db/d/t.txt", headers=IDENTITY)
    assert head.status_code == 200 and head.content == b"" and head.headers["content-length"] == "1000"
    head = await env.client.head("/db/d/t.txt", headers={"Accept-Encoding": "gzip"})
    assert head.headers["content-length"] == str(len(gz)) and head.headers["content-encoding"] == "gzip"

    info = await get_doc(env, "d", att_encoding_info="true")
    assert info["_attachments"]["t.txt"] == {
        "content_type": "text/plain",
        "revpos": 1,
        "digest": md5(gz),
        "length": 1000,
        "encoding": "gzip",
        "encoded_length": len(gz),
        "stub": True,
    }
    stub = (await get_doc(env, "d"))["_attachments"]["t.txt"]
    assert "encoding" not in stub and "encoded_length" not in stub and stub["length"] == 1000
    inline = (await get_doc(env, "d", attachments="true"))["_attachments"]["t.txt"]
    assert inline == {"content_type": "text/plain", "revpos": 1, "digest": md5(gz), "data": b64(TEXT_1000)}
    both = (await get_doc(env, "d", attachments="true", att_encoding_info="true"))["_attachments"]["t.txt"]
    assert both["data"] == b64(TEXT_1000) and both["encoding"] == "gzip" and both["encoded_length"] == len(gz)

    # And it goes back out to a CouchDB peer exactly as it came in (§7.5).
    response = await env.client.get(
        '/db/d?open_revs=["1-abc"]&revs=true&latest=true', headers={"Accept": "multipart/mixed"}
    )
    [outer] = parse_mime(response.content, boundary_of(response.headers["content-type"]))
    json_part, att = parse_mime(outer.body, boundary_of(dict(outer.headers)["Content-Type"]))
    assert orjson.loads(json_part.body)["_attachments"]["t.txt"] == entry
    assert att.body == gz and ("Content-Encoding", "gzip") in att.headers


async def test_bc07_gzip_parts_in_any_json_order(env: Env) -> None:
    """BC-07: parts are matched to the ``follows`` entries in ``_attachments`` order (not by
    ``filename``); a gzip part next to an identity part; parts without headers."""
    gz = gzip8(b"z" * 500)
    doc = {
        "_attachments": {
            "second.bin": {"content_type": "application/octet-stream", "length": 3, "follows": True},
            "first.txt": {
                "content_type": "text/plain",
                "length": 500,
                "follows": True,
                "encoding": "gzip",
                "encoded_length": len(gz),
                "digest": md5(gz),
            },
        }
    }
    parts = [(['Content-Disposition: attachment; filename="first.txt"'], b"abc"), ([], gz)]
    rev = check(
        await env.client.put("/db/o", content=multipart(doc, parts), headers={"Content-Type": MULTIPART}), 201
    )["rev"]
    assert await get_att(env, "o", "second.bin") == b"abc"
    assert await get_att(env, "o", "first.txt") == b"z" * 500
    atts = (await get_doc(env, "o", att_encoding_info="true"))["_attachments"]
    assert list(atts) == ["second.bin", "first.txt"]
    assert atts["first.txt"]["revpos"] == 1 == int(rev.split("-")[0])
    assert atts["first.txt"]["encoded_length"] == len(gz) and atts["first.txt"]["digest"] == md5(gz)


@pytest.mark.parametrize(
    ("content_type", "compressed"),
    [
        ("text/plain", True),
        ("text/html; charset=utf-8", True),
        ("application/json", True),
        ("application/javascript", True),
        ("application/xml", True),
        ("TEXT/CSV", True),
        ("image/png", False),
        ("application/octet-stream", False),
        ("application/xhtml+xml", False),
    ],
)
async def test_compressible_types_stored_gzip_level_8(env: Env, content_type: str, compressed: bool) -> None:
    """§4.7: types matching ``compressible_types`` are stored gzip at level 8 (so the bytes
    and the digest are CouchDB's); others as sent.  Both are served decoded by default."""
    data = b'{"k": "compressible compressible compressible"}\n' * 50
    await put_att(env, "c", "x", data, content_type=content_type)
    meta = (await get_doc(env, "c", att_encoding_info="true"))["_attachments"]["x"]
    assert meta["length"] == len(data) and meta["content_type"] == content_type
    stored = gzip8(data) if compressed else data
    assert meta["digest"] == md5(stored)
    if compressed:
        assert meta["encoding"] == "gzip" and meta["encoded_length"] == len(stored)
        _, raw = await raw_get(env.client, "/db/c/x", **{"Accept-Encoding": "gzip"})
        assert raw == stored
    else:
        assert "encoding" not in meta
    assert await get_att(env, "c", "x") == data


async def test_gzip_upload_with_content_encoding(env: Env) -> None:
    """§9.3: ``PUT`` with ``Content-Encoding: gzip`` stores the gzip body as sent (digest of
    those bytes, ``length`` decoded); any other coding is 415; corrupt gzip is 400."""
    gz = gzip.compress(b"q" * 2000, mtime=0)
    response = await env.client.put(
        "/db/g/a.bin", content=gz, headers={"Content-Encoding": "gzip", "Content-Type": "image/x-q"}
    )
    check(response, 201)
    meta = (await get_doc(env, "g", att_encoding_info="true"))["_attachments"]["a.bin"]
    assert meta == {
        "content_type": "image/x-q",
        "revpos": 1,
        "digest": md5(gz),
        "length": 2000,
        "encoding": "gzip",
        "encoded_length": len(gz),
        "stub": True,
    }
    assert await get_att(env, "g", "a.bin") == b"q" * 2000
    response = await unchanged(
        env, lambda: env.client.put("/db/h/a.bin", content=b"x", headers={"Content-Encoding": "br"})
    )
    check(
        response,
        415,
        {"error": "bad_content_type", "reason": "Only gzip and identity content-encodings are supported"},
    )
    response = await unchanged(
        env, lambda: env.client.put("/db/h/a.bin", content=b"not gzip", headers={"Content-Encoding": "gzip"})
    )
    check(response, 400)


async def test_empty_text_attachment_digest_is_of_gzip_bytes(env: Env) -> None:
    """pouchdb#3961 (BC-07 sources): an empty ``text/plain`` body is stored as the 20-byte
    gzip of nothing; ``digest`` is their MD5, not the MD5 of empty input; GET is empty."""
    await put_att(env, "e", "empty.txt", b"", content_type="text/plain")
    meta = (await get_doc(env, "e", att_encoding_info="true"))["_attachments"]["empty.txt"]
    assert meta["length"] == 0 and meta["encoded_length"] == len(gzip8(b"")) == 20
    assert meta["digest"] == md5(gzip8(b"")) != "md5-1B2M2Y8AsgTpgAmY7PhCfg=="
    response = await env.client.get("/db/e/empty.txt", headers=IDENTITY)
    assert (
        response.status_code == 200 and response.content == b"" and response.headers["content-length"] == "0"
    )


# ---------------------------------------------------------------------------------------
# BC-08: open_revs multipart/mixed with atts_since


async def _three_attachment_doc(env: Env) -> tuple[str, str, bytes, bytes]:
    """``d``: rev 1 has ``a.txt`` (gzip-stored) and ``b.bin``; rev 2 adds ``c.bin``."""
    rev1 = await put_doc(
        env,
        "d",
        {
            "k": 1,
            "_attachments": {
                "a.txt": {"content_type": "text/plain", "data": b64(TEXT_1000)},
                "b.bin": {"content_type": "image/png", "data": b64(b"\x89PNG" + bytes(100))},
            },
        },
    )
    c_data = os.urandom(3000)
    rev2 = await put_att(env, "d", "c.bin", c_data, rev=rev1)
    return rev1, rev2, c_data, gzip8(TEXT_1000)


async def test_bc08_open_revs_atts_since_follows_and_stubs(env: Env) -> None:
    """BC-08 / §7.5: ``open_revs=[rev2, missing]&atts_since=[rev1]`` (Accept
    multipart/mixed) → a nested multipart/related part whose JSON has the old attachments as
    stubs and ``c.bin`` as ``follows``, then ``c.bin``'s part with exactly CouchDB's headers,
    then ``application/json; error="true"`` ``{"missing": ...}``."""
    rev1, rev2, c_data, _ = await _three_attachment_doc(env)
    response = await env.client.get(
        "/db/d",
        params={
            "revs": "true",
            "open_revs": orjson.dumps([rev2, "3-ccc"]).decode(),
            "latest": "true",
            "atts_since": orjson.dumps([rev1]).decode(),
        },
        headers={"Accept": "multipart/mixed"},
    )
    assert response.status_code == 200
    related, missing = parse_mime(response.content, boundary_of(response.headers["content-type"]))
    assert missing.headers == [("Content-Type", 'application/json; error="true"')]
    assert orjson.loads(missing.body) == {"missing": "3-ccc"}
    [(name, value)] = related.headers
    assert name == "Content-Type"
    json_part, c_part = parse_mime(related.body, boundary_of(value))
    assert json_part.headers == [("Content-Type", "application/json")]
    doc = orjson.loads(json_part.body)
    assert doc["_rev"] == rev2 and doc["_revisions"]["start"] == 2 and doc["k"] == 1
    assert doc["_attachments"] == {
        "a.txt": {
            "content_type": "text/plain",
            "revpos": 1,
            "digest": md5(gzip8(TEXT_1000)),
            "length": 1000,
            "stub": True,
        },
        "b.bin": {
            "content_type": "image/png",
            "revpos": 1,
            "digest": md5(b"\x89PNG" + bytes(100)),
            "length": 104,
            "stub": True,
        },
        "c.bin": {
            "content_type": "application/octet-stream",
            "revpos": 2,
            "digest": md5(c_data),
            "length": 3000,
            "follows": True,
        },
    }
    assert c_part.headers == [
        ("Content-Disposition", 'attachment; filename="c.bin"'),
        ("Content-Type", "application/octet-stream"),
        ("Content-Length", "3000"),
    ]
    assert c_part.body == c_data


async def test_bc08_stubs_only_is_a_plain_json_part(env: Env) -> None:
    """BC-08 (couchdb#3328): with ``atts_since`` at the current rev every attachment is a
    stub, and the doc is a plain part with exactly ``Content-Type: application/json``."""
    _, rev2, _, _ = await _three_attachment_doc(env)
    response = await env.client.get(
        "/db/d",
        params={"open_revs": orjson.dumps([rev2]).decode(), "atts_since": orjson.dumps([rev2]).decode()},
        headers={"Accept": "multipart/mixed"},
    )
    [part] = parse_mime(response.content, boundary_of(response.headers["content-type"]))
    assert part.headers == [("Content-Type", "application/json")]
    atts = orjson.loads(part.body)["_attachments"]
    assert all(entry.get("stub") is True and "follows" not in entry for entry in atts.values())


async def test_bc08_everything_follows_without_atts_since(env: Env) -> None:
    """§7.5: without ``atts_since`` (or with revs outside the ancestry) every body follows,
    in ``_attachments`` order; the gzip-stored one as stored, with ``encoding``,
    ``encoded_length``, ``Content-Encoding: gzip`` and the digest of the sent bytes."""
    _, rev2, c_data, a_gz = await _three_attachment_doc(env)
    for extra in ({}, {"atts_since": '["1-0123456789abcdef0123456789abcdef"]'}):
        response = await env.client.get(
            "/db/d", params={"open_revs": f'["{rev2}"]', **extra}, headers={"Accept": "multipart/mixed"}
        )
        [related] = parse_mime(response.content, boundary_of(response.headers["content-type"]))
        json_part, *att_parts = parse_mime(related.body, boundary_of(dict(related.headers)["Content-Type"]))
        atts = orjson.loads(json_part.body)["_attachments"]
        assert list(atts) == ["a.txt", "b.bin", "c.bin"] and all(a["follows"] for a in atts.values())
        assert atts["a.txt"]["encoding"] == "gzip" and atts["a.txt"]["encoded_length"] == len(a_gz)
        assert [p.body for p in att_parts] == [a_gz, b"\x89PNG" + bytes(100), c_data]
        assert att_parts[0].headers == [
            ("Content-Disposition", 'attachment; filename="a.txt"'),
            ("Content-Type", "text/plain"),
            ("Content-Length", str(len(a_gz))),
            ("Content-Encoding", "gzip"),
        ]
        for (name, entry), part in zip(atts.items(), att_parts, strict=True):
            assert entry["digest"] == md5(part.body), name


async def test_bc08_json_forms(env: Env) -> None:
    """BC-08: ``Accept: application/json`` gives the JSON array (stubs); ``attachments=true``
    inlines decoded bodies; ``atts_since`` keeps the older ones as stubs there too."""
    rev1, rev2, c_data, _ = await _three_attachment_doc(env)
    result = check(await env.client.get("/db/d", params={"open_revs": f'["{rev2}", "9-zzz"]'}), 200)
    assert result[1] == {"missing": "9-zzz"}
    assert all(a["stub"] for a in result[0]["ok"]["_attachments"].values())
    doc = await get_doc(env, "d", attachments="true", atts_since=f'["{rev1}"]')
    assert doc["_attachments"]["a.txt"]["stub"] is True and doc["_attachments"]["b.bin"]["stub"] is True
    assert base64.b64decode(doc["_attachments"]["c.bin"]["data"]) == c_data
    doc = await get_doc(env, "d", attachments="true")
    assert base64.b64decode(doc["_attachments"]["a.txt"]["data"]) == TEXT_1000


async def test_bulk_get_attachments_true(env: Env) -> None:
    """§7.3 / issue 3: ``_bulk_get`` with ``attachments=true`` (query or body) inlines the
    decoded bodies as base64; with ``atts_since`` per entry only the newer ones."""
    rev1, rev2, c_data, _ = await _three_attachment_doc(env)
    for path, extra in (("/db/_bulk_get?attachments=true", {}), ("/db/_bulk_get", {"attachments": True})):
        bulk = check(await env.client.post(path, json={"docs": [{"id": "d", "rev": rev2}], **extra}), 200)
        atts = bulk["results"][0]["docs"][0]["ok"]["_attachments"]
        assert base64.b64decode(atts["a.txt"]["data"]) == TEXT_1000, path
        assert base64.b64decode(atts["c.bin"]["data"]) == c_data, path
    bulk = check(
        await env.client.post(
            "/db/_bulk_get?attachments=true", json={"docs": [{"id": "d", "rev": rev2, "atts_since": [rev1]}]}
        ),
        200,
    )
    atts = bulk["results"][0]["docs"][0]["ok"]["_attachments"]
    assert atts["a.txt"]["stub"] is True and base64.b64decode(atts["c.bin"]["data"]) == c_data


# ---------------------------------------------------------------------------------------
# stubs (§4.7)


async def test_missing_stub_on_new_doc_is_412(env: Env) -> None:
    """§4.7: a stub on a brand-new doc is always 412 ``missing_stub`` (PUT, interactive and
    replicated ``_bulk_docs``, multipart PUT), and nothing is stored."""
    data = b"stub body"
    await put_att(env, "other", "a.bin", data)  # the same bytes exist elsewhere: still no stub
    stub = {
        "a.bin": {"stub": True, "content_type": "application/octet-stream", "digest": md5(data), "revpos": 1}
    }
    reason = {"error": "missing_stub", "reason": "Invalid attachment stub in new for a.bin"}
    check(await unchanged(env, lambda: env.client.put("/db/new", json={"_attachments": stub})), 412, reason)
    response = await unchanged(
        env,
        lambda: env.client.put(
            "/db/new", content=multipart({"_attachments": stub}), headers={"Content-Type": MULTIPART}
        ),
    )
    check(response, 412, reason)
    body = check(
        await unchanged(
            env,
            lambda: env.client.post("/db/_bulk_docs", json={"docs": [{"_id": "new", "_attachments": stub}]}),
        ),
        201,
    )
    assert body == [{"id": "new", **reason}]
    replicated = {
        "_id": "new",
        "_rev": "1-abc",
        "_revisions": {"start": 1, "ids": ["abc"]},
        "_attachments": stub,
    }
    body = check(
        await unchanged(
            env, lambda: env.client.post("/db/_bulk_docs", json={"docs": [replicated], "new_edits": False})
        ),
        201,
    )
    assert body == [{"id": "new", "rev": "1-abc", **reason}]


async def test_stub_with_wrong_revpos_or_name_is_412(env: Env) -> None:
    """§4.7: a stub whose ``revpos`` differs from the stored one, or that names an
    attachment the edited revision does not have, is 412 ``missing_stub``."""
    rev = await put_att(env, "s", "a.bin", b"body")
    for atts, name in [
        ({"a.bin": {"stub": True, "revpos": 2}}, "a.bin"),
        ({"a.bin": {"stub": True, "revpos": 1}, "b.bin": {"stub": True}}, "b.bin"),
    ]:
        response = await unchanged(
            env, lambda atts=atts: env.client.put("/db/s", json={"_rev": rev, "_attachments": atts})
        )
        check(response, 412, {"error": "missing_stub", "reason": f"Invalid attachment stub in s for {name}"})


async def test_stub_carried_over_on_update(env: Env) -> None:
    """§4.7: a stub keeps the attachment (same digest, length, revpos; same bytes); an
    attachment left out of ``_attachments`` is gone in the new revision but still served
    for the old one."""
    rev1 = await put_doc(
        env,
        "s",
        {
            "_attachments": {
                "keep.bin": {"content_type": "image/gif", "data": b64(b"GIF89a keep")},
                "drop.bin": {"content_type": "image/gif", "data": b64(b"GIF89a drop")},
            }
        },
    )
    before = (await get_doc(env, "s"))["_attachments"]
    rev2 = await put_doc(
        env, "s", {"_rev": rev1, "v": 2, "_attachments": {"keep.bin": {"stub": True, "revpos": 1}}}
    )
    rev3 = await put_doc(env, "s", {"_rev": rev2, "v": 3, "_attachments": {"keep.bin": before["keep.bin"]}})
    doc = await get_doc(env, "s")
    assert doc["_rev"] == rev3 and doc["v"] == 3
    assert doc["_attachments"] == {"keep.bin": before["keep.bin"]}
    assert await get_att(env, "s", "keep.bin") == b"GIF89a keep"
    assert await get_att(env, "s", "drop.bin", rev=rev1) == b"GIF89a drop"
    check(await env.client.get("/db/s/drop.bin"), 404, MISSING_ATT)
    rev4 = await put_doc(env, "s", {"_rev": rev3, "v": 4})
    assert "_attachments" not in await get_doc(env, "s")
    assert await get_att(env, "s", "keep.bin", rev=rev3) == b"GIF89a keep"
    assert rev4.startswith("4-")


async def test_replicated_stub_resolves_against_stored_ancestor(env: Env) -> None:
    """§9.5, CouchDB replicator push: a ``new_edits=false`` multipart PUT whose JSON has an
    old attachment as a stub and a new one as ``follows`` resolves the stub against the
    nearest stored ancestor and keeps the sent ``revpos`` values."""
    rev1 = await put_att(env, "r", "old.bin", b"old bytes")
    h1 = rev1.split("-")[1]
    doc = {
        "_id": "r",
        "_rev": "3-cc",
        "_revisions": {"start": 3, "ids": ["cc", "bb", h1]},
        "_attachments": {
            "old.bin": {
                "content_type": "application/octet-stream",
                "revpos": 1,
                "digest": md5(b"old bytes"),
                "length": 9,
                "stub": True,
            },
            "new.bin": {
                "content_type": "application/octet-stream",
                "revpos": 3,
                "digest": md5(b"new bytes!"),
                "length": 10,
                "follows": True,
            },
        },
    }
    response = await env.client.put(
        "/db/r?new_edits=false",
        content=multipart(doc, [att_part("new.bin", b"new bytes!")]),
        headers={"Content-Type": MULTIPART},
    )
    check(response, 201, {"ok": True, "id": "r", "rev": "3-cc"})
    atts = (await get_doc(env, "r"))["_attachments"]
    assert atts["old.bin"]["revpos"] == 1 and atts["new.bin"]["revpos"] == 3
    assert await get_att(env, "r", "old.bin") == b"old bytes"
    assert await get_att(env, "r", "new.bin") == b"new bytes!"


# ---------------------------------------------------------------------------------------
# the attachment API (§9)


async def test_put_attachment_creates_and_updates(env: Env) -> None:
    """§9.3: no rev on a missing doc creates it (rev 1, default type
    application/octet-stream); a stale or missing rev on an existing doc is 409; the body
    and other attachments are carried over; ``revpos`` is the new depth; ``Location``."""
    response = await env.client.put("/db/p/one.bin", content=b"1")
    rev1 = check(response, 201)["rev"]
    assert rev1.startswith("1-") and response.headers["location"] == f"{BASE_URL}/db/p/one.bin"
    rev2 = await put_doc(env, "p", {"_rev": rev1, "title": "x", "_attachments": {"one.bin": {"stub": True}}})
    conflict = {"error": "conflict", "reason": "Document update conflict."}
    check(await unchanged(env, lambda: env.client.put("/db/p/two.bin", content=b"2")), 409, conflict)
    check(
        await unchanged(env, lambda: env.client.put(f"/db/p/two.bin?rev={rev1}", content=b"2")), 409, conflict
    )
    rev3 = check(
        await env.client.put(
            "/db/p/two.bin", content=b"2", headers={"If-Match": f'"{rev2}"', "Content-Type": "image/x"}
        ),
        201,
    )["rev"]
    doc = await get_doc(env, "p")
    assert doc["_rev"] == rev3 and doc["title"] == "x"
    assert doc["_attachments"]["one.bin"]["revpos"] == 1 and doc["_attachments"]["two.bin"]["revpos"] == 3
    assert doc["_attachments"]["one.bin"]["content_type"] == "application/octet-stream"
    assert doc["_attachments"]["two.bin"]["content_type"] == "image/x"


async def test_delete_attachment(env: Env) -> None:
    """§9.4: DELETE with the current rev writes a revision without the attachment (200,
    ``ETag``); the old revision still serves it; no rev → 409 (404 for a missing doc);
    stale rev → 409; unknown attachment → 404; deleting the last one leaves no
    ``_attachments`` member."""
    rev1 = await put_att(env, "x", "a.bin", b"aaa")
    rev2 = await put_att(env, "x", "b.bin", b"bbb", rev=rev1)
    conflict = {"error": "conflict", "reason": "Document update conflict."}
    check(await unchanged(env, lambda: env.client.delete("/db/x/a.bin")), 409, conflict)
    check(await unchanged(env, lambda: env.client.delete(f"/db/x/a.bin?rev={rev1}")), 409, conflict)
    check(await unchanged(env, lambda: env.client.delete(f"/db/x/zzz.bin?rev={rev2}")), 404, MISSING_ATT)
    check(
        await unchanged(env, lambda: env.client.delete("/db/nodoc/a.bin")),
        404,
        {"error": "not_found", "reason": "missing"},
    )
    response = await env.client.delete(f"/db/x/a.bin?rev={rev2}")
    rev3 = check(response, 200)["rev"]
    assert rev3.startswith("3-") and response.headers["etag"] == f'"{rev3}"'
    check(await env.client.get("/db/x/a.bin"), 404, MISSING_ATT)
    assert await get_att(env, "x", "a.bin", rev=rev2) == b"aaa"
    assert list((await get_doc(env, "x"))["_attachments"]) == ["b.bin"]
    rev4 = check(await env.client.delete("/db/x/b.bin", headers={"If-Match": f'"{rev3}"'}), 200)["rev"]
    doc = await get_doc(env, "x")
    assert doc == {"_id": "x", "_rev": rev4}


async def test_copy_carries_attachments(env: Env) -> None:
    """``COPY /db/doc`` with ``Destination``: the new doc has the source's attachments
    (same bodies, served from the copy), as CouchDB's COPY does."""
    rev = await put_att(env, "src", "a.bin", b"copied body")
    await put_att(env, "src", "t.txt", TEXT_1000, rev=rev, content_type="text/plain")
    response = await env.client.request("COPY", "/db/src", headers={"Destination": "dst"})
    check(response, 201)
    assert set((await get_doc(env, "dst"))["_attachments"]) == {"a.bin", "t.txt"}
    assert await get_att(env, "dst", "a.bin") == b"copied body"
    assert await get_att(env, "dst", "t.txt") == TEXT_1000


async def test_empty_attachments_object_is_not_stored(env: Env) -> None:
    """CouchDB omits ``_attachments`` when a doc has none, also when a client sent
    ``"_attachments": {}``."""
    await put_doc(env, "n", {"v": 1, "_attachments": {}})
    assert "_attachments" not in await get_doc(env, "n")


async def test_rev_and_if_match_must_agree(env: Env) -> None:
    """§9.3: the rev comes from ``?rev=`` or ``If-Match``; both given and different → 400
    "Document rev and etag have different values" (CouchDB ``extract_header_rev``)."""
    rev = await put_att(env, "m", "a.bin", b"one")
    response = await unchanged(
        env,
        lambda: env.client.put(
            f"/db/m/b.bin?rev={rev}",
            content=b"two",
            headers={"If-Match": '"1-00000000000000000000000000000000"'},
        ),
    )
    check(response, 400, {"error": "bad_request", "reason": "Document rev and etag have different values"})
    check(
        await env.client.put(f"/db/m/b.bin?rev={rev}", content=b"two", headers={"If-Match": f'"{rev}"'}), 201
    )


async def test_get_errors(env: Env) -> None:
    """§9.1: no doc → 404 missing; deleted winner → 404 deleted; unknown rev → 404 missing;
    no such attachment → 404 "Document is missing attachment"; a losing conflict leaf's
    attachment is served with ``?rev=``."""
    check(await env.client.get("/db/nodoc/a.bin"), 404, {"error": "not_found", "reason": "missing"})
    rev1 = await put_att(env, "g", "a.bin", b"winner")
    check(await env.client.get("/db/g/zz.bin"), 404, MISSING_ATT)
    check(await env.client.get("/db/g/a.bin?rev=7-abc"), 404, {"error": "not_found", "reason": "missing"})
    loser = {
        "_id": "g",
        "_rev": "1-0000",
        "_revisions": {"start": 1, "ids": ["0000"]},
        "_attachments": {"a.bin": {"content_type": "x/y", "data": b64(b"loser")}},
    }
    check(await env.client.post("/db/_bulk_docs", json={"docs": [loser], "new_edits": False}), 201, [])
    assert await get_att(env, "g", "a.bin") == b"winner"
    assert await get_att(env, "g", "a.bin", rev="1-0000") == b"loser"
    check(await env.client.delete(f"/db/g?rev={rev1}"), 200)
    check(await env.client.delete("/db/g?rev=1-0000"), 200)
    check(await env.client.get("/db/g/a.bin"), 404, {"error": "not_found", "reason": "deleted"})
    assert await get_att(env, "g", "a.bin", rev=rev1) == b"winner"


BODY_100 = bytes(range(100))


@pytest.mark.parametrize(
    ("header", "span"),
    [
        ("bytes=10-19", (10, 19)),
        ("bytes=0-0", (0, 0)),
        ("bytes=99-99", (99, 99)),
        ("bytes=-10", (90, 99)),
        ("bytes=-1", (99, 99)),
        ("bytes=-100", (0, 99)),
        ("bytes=-500", (0, 99)),
        ("bytes=90-", (90, 99)),
        ("bytes=1-", (1, 99)),
        ("bytes=50-200", (50, 99)),
        ("bytes=0-", None),
        ("bytes=0-99", (0, 99)),
        ("bytes=0-1,5-6", None),
        ("bytes=abc", None),
        ("items=1-2", None),
        ("bytes=20-10", 416),
        ("bytes=100-", 416),
        ("bytes=200-300", 416),
        ("bytes=-0", 416),
    ],
)
async def test_range(env: Env, header: str, span: Any) -> None:
    """§9.2 on an identity-stored body: single ranges → 206 with ``Content-Range`` and
    ``Content-Length``; ``B ≥ LEN`` clipped; ``bytes=-N`` the last N (all of it when
    N ≥ LEN, as RFC 7233 says; CouchDB 3 would drop the first byte); ``bytes=0-`` → 200;
    unparsable headers and several ranges → the whole body, 200 (couchpoint sends no
    multipart/byteranges); ``B < A`` or ``A ≥ LEN`` → 416 in CouchDB's shape."""
    await put_att(env, "r", "a.bin", BODY_100)
    response = await env.client.get("/db/r/a.bin", headers={"Range": header, **IDENTITY})
    if span == 416:
        check(response, 416, RANGE_416)
        return
    assert response.headers["accept-ranges"] == "bytes"
    if span is None:
        assert response.status_code == 200 and response.content == BODY_100
        assert response.headers["content-length"] == "100" and "content-range" not in response.headers
        return
    start, end = span
    assert response.status_code == 206
    assert response.headers["content-range"] == f"bytes {start}-{end}/100"
    assert response.headers["content-length"] == str(end - start + 1)
    assert response.content == BODY_100[start : end + 1]
    assert response.headers["etag"] == f'"{md5(BODY_100)[4:]}"'


async def test_range_ignored_for_gzip_stored(env: Env) -> None:
    """§9.2: gzip-stored attachments ignore ``Range`` (200, whole body, ``Accept-Ranges:
    none``), decoded or not."""
    await put_att(env, "r", "t.txt", TEXT_1000, content_type="text/plain")
    response = await env.client.get("/db/r/t.txt", headers={"Range": "bytes=0-9", **IDENTITY})
    assert response.status_code == 200 and response.content == TEXT_1000
    assert response.headers["accept-ranges"] == "none" and "content-range" not in response.headers
    response, raw = await raw_get(env.client, "/db/r/t.txt", Range="bytes=0-9", **{"Accept-Encoding": "gzip"})
    assert response.status_code == 200 and raw == gzip8(TEXT_1000)


async def test_etag_if_none_match_and_headers(env: Env) -> None:
    """§9.1: ``ETag`` is the quoted base64 digest; ``If-None-Match`` with it → 304 without
    a body; another value → 200; ``Content-Length``, ``Content-Type`` exactly as stored,
    ``Cache-Control: must-revalidate`` on GET and HEAD; HEAD has no body."""
    data = os.urandom(5000)
    rev = await put_att(env, "e", "a.bin", data, content_type="image/jpeg")
    etag = f'"{md5(data)[4:]}"'
    response = await env.client.get("/db/e/a.bin", headers=IDENTITY)
    assert response.status_code == 200 and response.content == data
    for get in (
        response,
        await env.client.head("/db/e/a.bin"),
        await env.client.get(f"/db/e/a.bin?rev={rev}"),
    ):
        assert get.headers["etag"] == etag
        assert get.headers["content-length"] == "5000"
        assert get.headers["content-type"] == "image/jpeg"
        assert get.headers["cache-control"] == "must-revalidate"
    assert (await env.client.head("/db/e/a.bin")).content == b""
    not_modified = await env.client.get("/db/e/a.bin", headers={"If-None-Match": etag})
    assert not_modified.status_code == 304 and not_modified.content == b""
    assert not_modified.headers["etag"] == etag
    assert (await env.client.get("/db/e/a.bin", headers={"If-None-Match": '"other"'})).content == data
    await put_att(env, "e", "t.txt", TEXT_1000, rev=rev, content_type="text/plain")
    text_etag = f'"{md5(gzip8(TEXT_1000))[4:]}"'
    for accept in ("gzip", "identity"):
        response = await env.client.get(
            "/db/e/t.txt", headers={"If-None-Match": text_etag, "Accept-Encoding": accept}
        )
        assert response.status_code == 304, accept


# ---------------------------------------------------------------------------------------
# multipart in: digests, lengths, malformed bodies (§7.6)


def _follows(data: bytes, **extra: Any) -> dict[str, Any]:
    return {"content_type": "application/octet-stream", "length": len(data), "follows": True, **extra}


async def _existing(env: Env) -> str:
    """A doc with an attachment, so rejected updates have something to leave alone."""
    return await put_att(env, "doc", "a.bin", b"existing bytes")


async def test_content_md5_mismatch(env: Env) -> None:
    """§4.7: a ``follows`` part whose bytes do not match ``digest`` → 400
    ``content_md5_mismatch`` "Possible message corruption.", for new docs, updates and
    replicated writes; also for a gzip part (digest of the gzip bytes)."""
    rev = await _existing(env)
    bad = {"a.bin": _follows(b"hello", digest=md5(b"HELLO"))}
    gz = gzip8(b"text " * 100)
    bad_gz = {
        "t.txt": _follows(
            b"text " * 100,
            content_type="text/plain",
            encoding="gzip",
            encoded_length=len(gz),
            digest=md5(b"x"),
        )
    }
    bodies = [
        ("/db/new", {"_attachments": bad}, [att_part("a.bin", b"hello")]),
        ("/db/doc", {"_rev": rev, "_attachments": bad}, [att_part("a.bin", b"hello")]),
        (
            "/db/doc?new_edits=false",
            {"_rev": "9-ff", "_revisions": {"start": 9, "ids": ["ff"]}, "_attachments": bad},
            [att_part("a.bin", b"hello")],
        ),
        ("/db/new", {"_attachments": bad_gz}, [att_part("t.txt", gz, "text/plain", gz=True)]),
    ]
    for path, doc, parts in bodies:
        response = await unchanged(
            env,
            lambda p=path, d=doc, ps=parts: env.client.put(
                p, content=multipart(d, ps), headers={"Content-Type": MULTIPART}
            ),
        )
        check(response, 400, MD5_MISMATCH)


@pytest.mark.parametrize(
    ("entry", "data"),
    [
        (_follows(b"12345"), b"1234"),
        (_follows(b"12345"), b"123456"),
        (_follows(b"12345"), b""),
        (
            {**_follows(b"x" * 50), "encoding": "gzip", "encoded_length": len(gzip8(b"x" * 50)) + 1},
            gzip8(b"x" * 50),
        ),
    ],
)
async def test_follows_length_mismatch(env: Env, entry: dict[str, Any], data: bytes) -> None:
    """§7.6: a part whose length differs from ``length`` (``encoded_length`` for gzip parts)
    → 400, nothing stored."""
    await _existing(env)
    part = att_part("a.bin", data, gz="encoding" in entry)
    response = await unchanged(
        env,
        lambda: env.client.put(
            "/db/new",
            content=multipart({"_attachments": {"a.bin": entry}}, [part]),
            headers={"Content-Type": MULTIPART},
        ),
    )
    check(response, 400)


GOOD_DOC = {"_attachments": {"a.bin": _follows(b"hello")}}
MALFORMED: list[tuple[str, str, bytes, int]] = [
    ("no boundary parameter", "multipart/related", multipart(GOOD_DOC, [att_part("a.bin", b"hello")]), 400),
    ("empty boundary", 'multipart/related; boundary=""', b"--\r\n\r\n{}\r\n----", 400),
    ("boundary over 70 chars", f'multipart/related; boundary="{"b" * 71}"', b"", 400),
    ("unterminated quoted boundary", 'multipart/related; boundary="B', b"--B\r\n\r\n{}\r\n--B--", 400),
    ("empty body", MULTIPART, b"", 400),
    ("no opening boundary", MULTIPART, b"just some bytes", 400),
    ("other boundary", MULTIPART, multipart(GOOD_DOC, [att_part("a.bin", b"hello")], boundary="C"), 400),
    ("header line without colon", MULTIPART, b"--B\r\nNoColonHere\r\n\r\n{}\r\n--B--", 400),
    (
        "control character in header",
        MULTIPART,
        b"--B\r\nContent-Type: application/json\x01\r\n\r\n{}\r\n--B--",
        400,
    ),
    ("invalid JSON", MULTIPART, b"--B\r\nContent-Type: application/json\r\n\r\n{bad\r\n--B--", 400),
    ("JSON not an object", MULTIPART, b"--B\r\nContent-Type: application/json\r\n\r\n[1]\r\n--B--", 400),
    ("JSON not UTF-8", MULTIPART, b'--B\r\nContent-Type: application/json\r\n\r\n{"a":"\xff"}\r\n--B--', 400),
    ("first part not JSON", MULTIPART, b"--B\r\nContent-Type: text/plain\r\n\r\n{}\r\n--B--", 415),
    ("missing attachment part", MULTIPART, multipart(GOOD_DOC, []), 400),
    (
        "one part for two follows",
        MULTIPART,
        multipart(
            {"_attachments": {"a.bin": _follows(b"hello"), "b.bin": _follows(b"hello")}},
            [att_part("a.bin", b"hello")],
        ),
        400,
    ),
    (
        "invalid gzip in a gzip part",
        MULTIPART,
        multipart(
            {"_attachments": {"a.txt": _follows(b"hello", encoding="gzip", encoded_length=5)}},
            [att_part("a.txt", b"hello", gz=True)],
        ),
        400,
    ),
    (
        "entry neither data, stub nor follows",
        MULTIPART,
        multipart({"_attachments": {"a.bin": {"content_type": "x/y"}}}),
        400,
    ),
    ("_attachments not an object", MULTIPART, multipart({"_attachments": [1]}), 400),
    ("attachment entry not an object", MULTIPART, multipart({"_attachments": {"a.bin": 5}}), 400),
    ("invalid base64 inline", MULTIPART, multipart({"_attachments": {"a.bin": {"data": "!!!"}}}), 400),
    ("truncated in the JSON part", MULTIPART, b"--B\r\nContent-Type: application/json\r\n\r\n{}", 400),
    ("truncated in part headers", MULTIPART, b"--B\r\nContent-Type: appl", 400),
    (
        "truncated in an attachment part",
        MULTIPART,
        multipart(GOOD_DOC, [att_part("a.bin", b"hello")])[:-8],
        400,
    ),
    (
        "truncated before the closing delimiter",
        MULTIPART,
        multipart(GOOD_DOC, [att_part("a.bin", b"hello")])[:-2],
        400,
    ),
]


@pytest.mark.parametrize(("kind", "content_type", "body", "status"), MALFORMED, ids=[m[0] for m in MALFORMED])
async def test_malformed_multipart_is_4xx_and_changes_nothing(
    env: Env, kind: str, content_type: str, body: bytes, status: int
) -> None:
    """§7.6 / issue 3: malformed ``multipart/related`` bodies get 400 (415 when the first
    part is not JSON), never 500, for a new doc and for an update of an existing doc
    with attachments; stored data and blobs are unchanged afterwards."""
    rev = await _existing(env)
    for path in ("/db/new", f"/db/doc?rev={rev}"):
        response = await unchanged(
            env, lambda path=path: env.client.put(path, content=body, headers={"Content-Type": content_type})
        )
        check(response, status)


async def test_multipart_framing_variants_accepted(env: Env) -> None:
    """§7.6: an unquoted boundary, a CRLF preamble, a trailing CRLF after ``--B--`` and an
    epilogue, and parts without headers are all accepted."""
    body = b"\r\n" + multipart(GOOD_DOC, [([], b"hello")]) + b"\r\nepilogue"
    response = await env.client.put(
        "/db/v", content=body, headers={"Content-Type": "multipart/related; boundary=B"}
    )
    check(response, 201)
    assert await get_att(env, "v", "a.bin") == b"hello"


# ---------------------------------------------------------------------------------------
# deduplication and compaction


async def test_same_bytes_stored_once(make_env: MakeEnv) -> None:
    """Content addressing: the same body written as an attachment PUT, inline base64, a
    multipart part, in two docs and two databases, is one blob (one file); a compressible
    body is one blob for its gzip bytes."""
    env = await make_env()
    check(await env.client.put("/db2"), 201)
    data = os.urandom(4096)
    base = await env.blobs()
    await put_att(env, "one", "a.bin", data)
    await put_doc(env, "two", {"_attachments": {"b.bin": {"content_type": "x/y", "data": b64(data)}}})
    response = await env.client.put(
        "/db/three",
        content=multipart({"_attachments": {"c": _follows(data)}}, [([], data)]),
        headers={"Content-Type": MULTIPART},
    )
    check(response, 201)
    check(await env.client.put("/db2/four/d.bin", content=data), 201)
    added = await env.blobs() - base
    assert len(added) == 1
    [key] = added
    assert key == hashlib.sha256(data).hexdigest()
    if isinstance(env.storage, SQLiteStorage):
        assert (env.storage.attachments_dir / key[:2] / key).read_bytes() == data
    await put_att(env, "t1", "x.txt", TEXT_1000, content_type="text/plain")
    await put_att(env, "t2", "y.txt", TEXT_1000, content_type="text/markdown")
    assert await env.blobs() - base == {key, hashlib.sha256(gzip8(TEXT_1000)).hexdigest()}


async def test_compact_removes_unreferenced_blobs(env: Env) -> None:
    """§3.12 and docs/attachments.md: ``POST /{db}/_compact`` deletes the blobs no stored
    revision references once they are older than the grace period (600 s), and keeps
    referenced ones and young unreferenced ones (uploads in flight)."""
    rev1 = await put_att(env, "c", "a.bin", b"version one")
    check(await env.client.put("/db/_revs_limit", content=b"1"), 200, {"ok": True})
    await put_att(env, "c", "a.bin", b"version two", rev=rev1)  # rev 1 (and its body) stemmed away
    response = await env.client.put(f"/db/c/b.bin?rev={rev1}", content=b"conflicting upload")
    check(response, 409)  # its blob was stored before the conflict was known
    old = {hashlib.sha256(b).hexdigest() for b in (b"version one", b"conflicting upload")}
    live = hashlib.sha256(b"version two").hexdigest()
    assert blob_keys(env.storage) >= old | {live}

    compact = await env.client.post("/db/_compact", headers={"Content-Type": "application/json"})
    check(compact, 202, {"ok": True})
    assert blob_keys(env.storage) >= old | {live}, "young blobs must survive (grace period)"

    env.age_blobs(3600)
    check(
        await env.client.post("/db/_compact", headers={"Content-Type": "application/json"}), 202, {"ok": True}
    )
    assert blob_keys(env.storage) == {live}
    assert await get_att(env, "c", "a.bin") == b"version two"


async def test_rejected_upload_blob_is_garbage(env: Env) -> None:
    """A 409 attachment PUT (the body is streamed into storage before the conflict is
    known) leaves only an unreferenced blob, removed by ``collect_garbage(grace_s=0)``."""
    rev = await put_doc(env, "c", {})
    before = await env.blobs()
    response = await unchanged(
        env, lambda: env.client.put("/db/c/a.bin?rev=1-0000", content=os.urandom(10_000))
    )
    check(response, 409)
    assert await env.blobs() == before
    assert rev.startswith("1-")


async def test_large_attachment_streams_both_ways(env: Env) -> None:
    """A 5 MiB body sent as an async stream of chunks and read back streamed: bytes and
    length match (the real-server benchmark covers memory use at 1 GB)."""
    chunk = os.urandom(65536)
    count = 80

    async def body() -> AsyncIterator[bytes]:
        for i in range(count):
            yield bytes([i]) + chunk[1:]

    expected = hashlib.sha256()
    for i in range(count):
        expected.update(bytes([i]) + chunk[1:])
    started = time.monotonic()
    check(await env.client.put("/db/big/a.bin", content=body()), 201)
    digest = hashlib.sha256()
    size = 0
    async with env.client.stream("GET", "/db/big/a.bin") as response:
        assert response.headers["content-length"] == str(count * 65536)
        async for piece in response.aiter_raw():
            digest.update(piece)
            size += len(piece)
    assert size == count * 65536 and digest.hexdigest() == expected.hexdigest()
    assert time.monotonic() - started < 60
