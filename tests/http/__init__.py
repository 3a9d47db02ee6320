"""HTTP-level tests: the CouchDB API driven in-process through ``httpx.ASGITransport``.

Each test's docstring names the case (``BC-xx`` in ``protocol-cases.md``), the protocol
reference section (``§n.m`` in ``replication-protocol.md``) or the CouchDB 3.4 recording
(``d01[i]``, ``recordings/couchdb-3.4/d01.jsonl`` line ``i``) whose answer it pins.

Shared helpers live here (the conftest only holds fixtures):

* :func:`assert_error` -- status plus the exact ``{"error", "reason"}`` body.
* :func:`snapshot` -- everything a client can read about a database, to prove that a
  rejected request left stored data unchanged.
* :func:`parse_multipart` -- a strict ``multipart/*`` body parser.
* :class:`RawASGI` -- drives the app message by message; ``httpx.ASGITransport``
  buffers whole bodies, so feeds that never end (heartbeats) and "sent at once" checks
  need this.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote, unquote

import httpx
import orjson

T = TypeVar("T")

BASE_URL = "http://127.0.0.1:5984"

JSON = {"Content-Type": "application/json"}
"""Request headers for a JSON body (what both replicators send)."""

STEP_TIMEOUT = 5.0
"""Upper bound (seconds) for one awaited step of a streamed response.  Only a bound
against hangs: every wait in these tests ends on a server event, never on the clock."""

ILLEGAL_DB_NAME = (
    "Name: '{}'. Only lowercase characters (a-z), digits (0-9), and any of the characters _, $, (, ), "
    "+, -, and / are allowed. Must begin with a letter."
)
NEW_EDITS_FALSE_NEEDS_REV = "When `new_edits: false`, the document needs `_rev` or `_revisions` specified"
RESERVED_ID = "Only reserved document ids may start with underscore."


async def bounded(awaitable: Awaitable[T], timeout: float, what: str) -> T:
    """Await ``awaitable`` for at most ``timeout`` seconds, then fail.

    Unlike ``asyncio.wait_for`` this never waits for a task that ignores its
    cancellation, so a hung server fails the test instead of hanging the suite.
    """
    task = asyncio.ensure_future(awaitable)
    done, _ = await asyncio.wait({task}, timeout=timeout)
    if not done:
        task.cancel()
        await asyncio.wait({task}, timeout=1.0)
        raise AssertionError(f"{what} did not finish within {timeout} s")
    return task.result()


def enc(doc_id: str) -> str:
    """Percent-encode a doc id for a path segment the way PouchDB does
    (``encodeURIComponent``: everything but ``A-Za-z0-9-_.!~*'()``)."""
    return quote(doc_id, safe="-_.!~*'()")


def couch_enc(doc_id: str) -> str:
    """Percent-encode a doc id the way the CouchDB replicator does
    (``couch_util:url_encode``: only ``A-Za-z0-9_.:-`` stay raw)."""
    return quote(doc_id, safe="_.:-")


def body_of(response: httpx.Response) -> Any:
    """The JSON body, after checking the response says it is JSON (§1.2)."""
    content_type = response.headers.get("content-type", "")
    assert content_type.split(";")[0].strip() == "application/json", (
        f"{response.request.method} {response.request.url} -> {response.status_code} "
        f"with Content-Type {content_type!r}: {response.text[:200]!r}"
    )
    return orjson.loads(response.content)


def assert_error(
    response: httpx.Response, status: int, error: str, reason: str | None = None
) -> dict[str, Any]:
    """``response`` is CouchDB's error JSON: ``status`` and exactly ``{"error", "reason"}``.

    ``reason=None`` checks only that a string reason is present (for errors whose exact
    CouchDB text is not documented).
    """
    body = body_of(response)
    where = f"{response.request.method} {response.request.url}"
    assert response.status_code == status, f"{where}: expected {status}, got {response.status_code} {body}"
    assert isinstance(body, dict) and set(body) == {"error", "reason"}, f"{where}: {body}"
    assert isinstance(body["reason"], str), f"{where}: {body}"
    if reason is None:
        assert body["error"] == error, f"{where}: {body}"
    else:
        assert body == {"error": error, "reason": reason}, f"{where}: {body}"
    return body


def assert_ok(response: httpx.Response, status: int) -> Any:
    """``response`` has ``status`` and a JSON body; return the body."""
    body = body_of(response)
    assert response.status_code == status, (
        f"{response.request.method} {response.request.url}: expected {status}, "
        f"got {response.status_code} {body}"
    )
    return body


async def put(client: httpx.AsyncClient, path: str, doc: Any, **params: str) -> dict[str, Any]:
    """PUT a JSON doc; expect 201 (200 for a deletion); return the body."""
    response = await client.put(path, json=doc, params=params or None)
    expected = 200 if isinstance(doc, dict) and doc.get("_deleted") is True else 201
    body: dict[str, Any] = assert_ok(response, expected)
    return body


async def bulk_docs(client: httpx.AsyncClient, db: str, docs: list[Any], **extra: Any) -> Any:
    """POST ``_bulk_docs``; expect 201 (BC-23); return the body."""
    response = await client.post(f"/{db}/_bulk_docs", json={"docs": docs, **extra})
    return assert_ok(response, 201)


async def replicate(client: httpx.AsyncClient, db: str, *docs: dict[str, Any]) -> None:
    """Store revisions verbatim with ``new_edits=false`` (how replicators write, §4.10)."""
    assert await bulk_docs(client, db, list(docs), new_edits=False) == []


def revisions(*revs: str) -> dict[str, Any]:
    """``_revisions`` for a path given newest first: ``revisions("3-c", "2-b", "1-a")``."""
    start = int(revs[0].split("-", 1)[0])
    return {"start": start, "ids": [r.split("-", 1)[1] for r in revs]}


async def changes(client: httpx.AsyncClient, db: str, **params: Any) -> dict[str, Any]:
    """A normal ``_changes`` response body."""
    response = await client.get(f"/{db}/_changes", params=params)
    body: dict[str, Any] = assert_ok(response, 200)
    return body


async def db_info(client: httpx.AsyncClient, db: str) -> dict[str, Any]:
    body: dict[str, Any] = assert_ok(await client.get(f"/{db}"), 200)
    return body


def seq_number(seq: Any) -> int:
    """The leading integer of a seq (integers, ``"42"`` and ``"42-opaque"`` alike, §6.7)."""
    return int(str(seq).split("-", 1)[0])


async def snapshot(client: httpx.AsyncClient, db: str, local_ids: Iterable[str] = ()) -> dict[str, Any]:
    """What a client can read of ``db``: info, every doc with its body, every leaf in
    ``_changes``, the named ``_local`` docs, and the list of databases."""
    out: dict[str, Any] = {
        "info": (await client.get(f"/{db}")).json(),
        "all_docs": (await client.get(f"/{db}/_all_docs", params={"include_docs": "true"})).json(),
        "changes": (await client.get(f"/{db}/_changes", params={"style": "all_docs"})).text,
        "all_dbs": (await client.get("/_all_dbs")).json(),
    }
    for local_id in local_ids:
        response = await client.get(f"/{db}/_local/{enc(local_id)}")
        out[f"_local/{local_id}"] = (response.status_code, response.json())
    return out


@dataclass
class Part:
    """One part of a multipart body: ``headers`` in order (name, value) and ``body``."""

    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None


def parse_multipart(content_type: str, body: bytes) -> list[Part]:
    """Parse a ``multipart/*`` body strictly (CRLF line ends, closing delimiter required).

    The boundary comes from ``content_type`` (quoted or not).  Text before the first
    delimiter is ignored (CouchDB's ``_bulk_get`` starts with a CRLF).
    """
    match = re.search(r'boundary=(?:"([^"]+)"|([^;\s]+))', content_type)
    assert match, f"no boundary in {content_type!r}"
    boundary = (match.group(1) or match.group(2)).encode()
    delimiter = b"--" + boundary
    pieces = body.split(delimiter)
    assert len(pieces) >= 2, f"no delimiter {delimiter!r} in {body[:200]!r}"
    parts: list[Part] = []
    closed = False
    for piece in pieces[1:]:
        if piece.startswith(b"--"):
            closed = True
            break
        assert piece.startswith(b"\r\n"), f"delimiter not followed by CRLF: {piece[:80]!r}"
        assert piece.endswith(b"\r\n"), (
            f"part not followed by CRLF before the next delimiter: {piece[-80:]!r}"
        )
        head, sep, content = piece[2:-2].partition(b"\r\n\r\n")
        if not sep:  # a part without headers starts with the blank line itself
            assert piece[2:4] == b"\r\n", f"part without header/body separator: {piece[:80]!r}"
            head, content = b"", piece[4:-2]
        headers = []
        for line in head.decode("latin-1").split("\r\n"):
            if line:
                name, _, value = line.partition(":")
                headers.append((name.strip(), value.strip()))
        parts.append(Part(headers, content))
    assert closed, "multipart body lacks the closing delimiter"
    return parts


class RawASGI:
    """One request driven straight through the ASGI interface, message by message.

    ``async with RawASGI(app, "GET", "/db/_changes?feed=continuous") as call:`` starts
    the app; :meth:`start` returns ``(status, headers)``; :meth:`chunk` the next body
    chunk (``None`` once the response is complete).  Leaving the block sends
    ``http.disconnect`` and waits for the app to finish.  ``target`` is sent as the raw
    path (already percent-encoded) plus query string.
    """

    def __init__(
        self,
        app: Any,
        method: str,
        target: str,
        headers: Mapping[str, str] | None = None,
        body: bytes = b"",
    ) -> None:
        path, _, query = target.partition("?")
        all_headers = {"host": "127.0.0.1:5984", "accept": "application/json", **(headers or {})}
        if body:
            all_headers["content-length"] = str(len(body))
        self.app = app
        self.scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.4"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": unquote(path),
            "raw_path": path.encode("ascii"),
            "query_string": query.encode("ascii"),
            "root_path": "",
            "headers": [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in all_headers.items()],
            "server": ("127.0.0.1", 5984),
            "client": ("127.0.0.1", 50000),
        }
        self._body = body
        self._body_sent = False
        self._disconnect = asyncio.Event()
        self._messages: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._complete = False

    async def _receive(self) -> dict[str, Any]:
        if not self._body_sent:
            self._body_sent = True
            return {"type": "http.request", "body": self._body, "more_body": False}
        await self._disconnect.wait()
        return {"type": "http.disconnect"}

    async def _send(self, message: dict[str, Any]) -> None:
        await self._messages.put(message)

    async def __aenter__(self) -> RawASGI:
        self._task = asyncio.create_task(self.app(self.scope, self._receive, self._send))
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._disconnect.set()
        assert self._task is not None
        await bounded(self._task, STEP_TIMEOUT, f"the app (after disconnect) for {self.scope['path']}")

    async def _next(self) -> dict[str, Any]:
        return await bounded(
            self._messages.get(), STEP_TIMEOUT, f"the next ASGI message for {self.scope['path']}"
        )

    async def start(self) -> tuple[int, dict[str, str]]:
        """The status and headers (lower-cased names) of the response."""
        message = await self._next()
        assert message["type"] == "http.response.start", message
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in message.get("headers", [])}
        return message["status"], headers

    async def chunk(self) -> bytes | None:
        """The next non-empty body chunk, or ``None`` when the body is complete."""
        while not self._complete:
            message = await self._next()
            assert message["type"] == "http.response.body", message
            self._complete = not message.get("more_body", False)
            if message.get("body"):
                return bytes(message["body"])
        return None

    async def rest(self) -> bytes:
        """Everything up to the end of the body (at most ``STEP_TIMEOUT`` in all, so an
        endless heartbeat stream fails instead of hanging)."""

        async def collect() -> bytes:
            chunks = []
            while (piece := await self.chunk()) is not None:
                chunks.append(piece)
            return b"".join(chunks)

        return await bounded(collect(), STEP_TIMEOUT, f"the rest of the body of {self.scope['path']}")
