"""``_changes`` feeds as async byte streams: normal, longpoll, continuous, eventsource.

Framework-free: :func:`feed` yields the bytes of the response body; the HTTP layer only
wraps them in a streaming response.  Protocol reference §6 and CouchDB docs *Changes
Feed*:

* Each doc appears once, at its latest seq; ``since`` is exclusive; seqs are integers.
* ``last_seq`` is the last seq *examined*: the last row's seq when ``limit`` cut the feed
  short, never the database's current seq (PouchDB resumes from it).
* ``style=all_docs`` lists every leaf (winner first); ``main_only`` the winner.
* ``heartbeat`` writes a bare newline (an SSE comment-like event for eventsource) every
  N ms while idle and keeps the feed open; otherwise ``timeout`` ms of idleness ends a
  longpoll with an empty result and a continuous feed with a ``last_seq`` line.
* Rows are read from storage in bounded pages and no read transaction is held while
  waiting; a write wakes waiters through the database's :class:`ChangeNotifier`.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

from couchpoint import errors
from couchpoint.database import Database
from couchpoint.document import DESIGN_PREFIX, render_doc
from couchpoint.storage.base import DocSummary

Feed = Literal["normal", "longpoll", "continuous", "eventsource"]
FEEDS = {"normal": "normal", "longpoll": "longpoll", "continuous": "continuous", "live": "continuous",
         "eventsource": "eventsource"}  # fmt: skip

DocPredicate = Callable[[dict[str, Any]], bool]


@dataclass(frozen=True)
class ChangesQuery:
    """Parsed ``_changes`` parameters.

    ``since``: exclusive start seq (``None`` = ``now``).  ``limit``: max rows (``None`` =
    unlimited).  ``heartbeat_ms``/``timeout_ms``: see module docstring.  ``doc_ids``: the
    ``_doc_ids`` filter.  ``selector``: a compiled predicate over revision bodies (the
    ``_selector`` filter).  ``design_only``: the ``_design`` filter.
    """

    feed: Feed = "normal"
    since: int | None = 0
    limit: int | None = None
    descending: bool = False
    style: Literal["main_only", "all_docs"] = "main_only"
    include_docs: bool = False
    conflicts: bool = False
    heartbeat_ms: int | None = None
    timeout_ms: int = 60_000
    doc_ids: tuple[str, ...] | None = None
    selector: DocPredicate | None = None
    design_only: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def parse_since(value: str | None) -> int | None:
    """Parse ``since`` leniently: ``0``, ``now`` (→ ``None``), ``42``, ``"42"`` with quotes,
    and ``42-opaque`` (leading integer).  Raises ``400 bad_request`` "Malformed sequence
    supplied in 'since' parameter." otherwise."""
    if value is None or value == "":
        return 0
    text = value.strip()
    if len(text) >= 2 and text[0] == text[-1] == '"':
        text = text[1:-1]
    if text == "now":
        return None
    head = text.split("-", 1)[0]
    if head.isdigit() and head.isascii():
        return int(head)
    raise errors.BadRequest("Malformed sequence supplied in 'since' parameter.")


def _dumps(value: Any) -> bytes:
    return orjson.dumps(value)


class _RowBuilder:
    """Turns stored summaries into ``_changes`` rows, applying style, filters and
    ``include_docs``, one page at a time."""

    def __init__(self, db: Database, query: ChangesQuery) -> None:
        self.db = db
        self.query = query

    async def rows(self, page: Sequence[DocSummary]) -> list[dict[str, Any]]:
        q = self.query
        page = [s for s in page if s.id]  # "" marks an examined position, not a doc
        if q.design_only:
            page = [s for s in page if s.id.startswith(DESIGN_PREFIX)]
        revs_by_id: dict[str, list[str]] = {}
        for s in page:
            leaves = s.leaves if q.style == "all_docs" else s.leaves[:1]
            revs_by_id[s.id] = [rev for rev, _ in leaves]
        if q.selector is not None:
            revisions = await self.db.store.get_revisions(
                [(doc_id, rev) for doc_id, revs in revs_by_id.items() for rev in revs]
            )
            for s in page:
                kept = []
                for rev in revs_by_id[s.id]:
                    revision = revisions.get((s.id, rev))
                    if revision is not None and q.selector(
                        render_doc(s.id, rev, revision.deleted, revision.body)
                    ):
                        kept.append(rev)
                revs_by_id[s.id] = kept
        emitted = [s for s in page if revs_by_id[s.id]]
        docs: dict[str, dict[str, Any]] = {}
        if q.include_docs and emitted:
            docs = await self.db.winner_docs(emitted)
        rows: list[dict[str, Any]] = []
        for s in emitted:
            row: dict[str, Any] = {
                "seq": s.seq,
                "id": s.id,
                "changes": [{"rev": r} for r in revs_by_id[s.id]],
            }
            if s.deleted:
                row["deleted"] = True
            if q.include_docs:
                doc = docs.get(s.id)
                if doc is not None and q.conflicts:
                    losers = [rev for rev, deleted in s.leaves[1:] if not deleted]
                    if losers:
                        doc["_conflicts"] = losers
                row["doc"] = doc
            rows.append(row)
        return rows


async def _pages(db: Database, query: ChangesQuery, since: int) -> AsyncIterator[list[DocSummary]]:
    if query.doc_ids is not None:
        # Only the listed docs are read; the rest of the feed counts as examined, so the
        # page ends with a marker at the db's current seq (last_seq then covers it).
        update_seq = (await db.store.info()).update_seq
        found = await db.doc_ids_changes(since, query.doc_ids)
        if query.descending:
            found.reverse()
        elif update_seq > since and (not found or found[-1].seq < update_seq):
            found.append(DocSummary("", update_seq, (("", False),)))
        if found:
            yield found
        return
    async for page in db.changes_pages(since, descending=query.descending):
        yield page


async def _collect(
    db: Database, query: ChangesQuery, since: int, remaining: int | None
) -> AsyncIterator[tuple[dict[str, Any] | None, int]]:
    """Yield ``(row, seq)`` for every examined change after ``since`` up to ``remaining``
    rows; filtered-out changes yield ``(None, seq)`` so ``last_seq`` can advance."""
    builder = _RowBuilder(db, query)
    sent = 0
    async for page in _pages(db, query, since):
        rows = {row["id"]: row for row in await builder.rows(page)}
        for summary in page:
            row = rows.get(summary.id)
            if row is not None:
                sent += 1
            yield row, summary.seq
            if remaining is not None and sent >= remaining:
                return


async def feed(db: Database, query: ChangesQuery) -> AsyncIterator[bytes]:
    """The body of a ``_changes`` response for ``query``, as a stream of byte chunks."""
    since = db.notifier.seq if query.since is None else query.since
    if query.since is None:
        since = (await db.store.info()).update_seq
    if query.feed in ("normal", "longpoll"):
        async for chunk in _single_response(db, query, since):
            yield chunk
    else:
        async for chunk in _stream(db, query, since):
            yield chunk


async def _single_response(db: Database, query: ChangesQuery, since: int) -> AsyncIterator[bytes]:
    yield b'{"results":[\n'
    last_seq = 0 if query.descending else since
    sent = 0
    first = True

    async def emit_all() -> AsyncIterator[bytes]:
        nonlocal last_seq, sent, first
        async for row, seq in _collect(db, query, since, query.limit):
            last_seq = seq
            if row is None:
                continue
            sent += 1
            yield (b"" if first else b",\n") + _dumps(row)
            first = False

    if query.limit != 0:
        async for chunk in emit_all():
            yield chunk
        if query.feed == "longpoll" and sent == 0:
            deadline = None if query.heartbeat_ms else time.monotonic() + query.timeout_ms / 1000
            while sent == 0:
                woke = await _wait(db, since, query, deadline)
                if woke is None:
                    break
                if not woke:
                    yield b"\n"
                    continue
                async for chunk in emit_all():
                    yield chunk
                since = max(since, last_seq)
    if query.descending:
        pending = 0
    else:
        pending = await db.store.count_changes(last_seq)
    yield b"\n],\n" + b'"last_seq":' + _dumps(last_seq) + b',"pending":' + _dumps(pending) + b"}\n"


async def _wait(db: Database, since: int, query: ChangesQuery, deadline: float | None) -> bool | None:
    """Wait for a change after ``since``: ``True`` woke, ``False`` heartbeat due,
    ``None`` idle timeout reached."""
    if query.heartbeat_ms:
        return await db.notifier.wait(since, query.heartbeat_ms / 1000)
    assert deadline is not None
    left = deadline - time.monotonic()
    if left <= 0:
        return None
    woke = await db.notifier.wait(since, left)
    return True if woke else None


async def _stream(db: Database, query: ChangesQuery, since: int) -> AsyncIterator[bytes]:
    eventsource = query.feed == "eventsource"
    sent = 0
    last_seq = since
    heartbeat = b"event: heartbeat\ndata: \n\n" if eventsource else b"\n"
    yielded = False
    while True:
        remaining = None if query.limit is None else query.limit - sent
        if remaining is not None and remaining <= 0:
            break
        async for row, seq in _collect(db, query, last_seq, remaining):
            last_seq = max(last_seq, seq)
            if row is None:
                continue
            sent += 1
            yielded = True
            if eventsource:
                yield b"data: " + _dumps(row) + b"\nid: " + _dumps(row["seq"]) + b"\n\n"
            else:
                yield _dumps(row) + b"\n"
        if query.limit is not None and sent >= query.limit:
            break
        if not yielded:
            # Flush the headers right away (CouchDB sends a first newline while waiting).
            yield heartbeat if eventsource else b"\n"
            yielded = True
        deadline = None if query.heartbeat_ms else time.monotonic() + query.timeout_ms / 1000
        while True:
            woke = await _wait(db, last_seq, query, deadline)
            if woke is None:
                pending = await db.store.count_changes(last_seq)
                if not eventsource:
                    yield _dumps({"last_seq": last_seq, "pending": pending}) + b"\n"
                return
            if woke:
                break
            yield heartbeat
    pending = await db.store.count_changes(last_seq)
    if not eventsource:
        yield _dumps({"last_seq": last_seq, "pending": pending}) + b"\n"
