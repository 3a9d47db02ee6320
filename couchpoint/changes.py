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
  waiting.  A feed reads storage itself only to catch up; once it has sent everything it
  waits on the database's :class:`~couchpoint.notify.ChangeNotifier`, which reads each
  wakeup's rows once and hands the same :class:`~couchpoint.notify.ChangeBatch` to every
  waiting feed (``docs/feeds.md``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

from couchpoint import errors
from couchpoint.database import CHANGES_PAGE, Database
from couchpoint.document import DESIGN_PREFIX, render_doc
from couchpoint.notify import CATCH_UP, CLOSED, TIMEOUT, ChangeBatch, Signal
from couchpoint.storage.base import DocSummary, Revision

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
    ``include_docs``, one page at a time.

    With a :class:`ChangeBatch` (a live wakeup) the bodies come from the batch, read once
    for every feed; otherwise from storage."""

    def __init__(self, db: Database, query: ChangesQuery) -> None:
        self.db = db
        self.query = query
        self.doc_ids = frozenset(query.doc_ids) if query.doc_ids is not None else None

    async def rows(
        self, page: Sequence[DocSummary], batch: ChangeBatch | None = None
    ) -> list[dict[str, Any]]:
        q = self.query
        page = [s for s in page if s.id]  # "" marks an examined position, not a doc
        if batch is not None and self.doc_ids is not None:
            page = [s for s in page if s.id in self.doc_ids]
        if q.design_only:
            page = [s for s in page if s.id.startswith(DESIGN_PREFIX)]
        if not page:
            return []
        revs_by_id: dict[str, list[str]] = {}
        for s in page:
            leaves = s.leaves if q.style == "all_docs" else s.leaves[:1]
            revs_by_id[s.id] = [rev for rev, _ in leaves]
        revisions: dict[tuple[str, str], Revision] = {}
        if q.selector is not None:
            if batch is not None:
                revisions = await batch.revisions()
            else:
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
            if batch is not None:
                revisions = await batch.revisions()
                for s in emitted:
                    revision = revisions.get((s.id, s.rev))
                    if revision is not None:
                        docs[s.id] = render_doc(s.id, s.rev, revision.deleted, revision.body)
            else:
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


async def _pages(
    db: Database, query: ChangesQuery, since: int, remaining: int | None = None
) -> AsyncIterator[list[DocSummary]]:
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
    # A feed that wants N more rows reads pages of at most N (PouchDB asks limit=100).
    page_size = CHANGES_PAGE if remaining is None else max(1, min(CHANGES_PAGE, remaining))
    async for page in db.changes_pages(since, descending=query.descending, page_size=page_size):
        yield page


async def _examine(
    builder: _RowBuilder, page: Sequence[DocSummary], batch: ChangeBatch | None, remaining: int | None
) -> AsyncIterator[tuple[dict[str, Any] | None, int]]:
    """``(row, seq)`` for each summary of ``page`` in order, ``row`` ``None`` when filtered
    out (so ``last_seq`` still advances), stopping after ``remaining`` rows."""
    rows = {row["id"]: row for row in await builder.rows(page, batch)}
    sent = 0
    for summary in page:
        row = rows.get(summary.id)
        if row is not None:
            sent += 1
        yield row, summary.seq
        if remaining is not None and sent >= remaining:
            return


async def _collect(
    db: Database, query: ChangesQuery, since: int, remaining: int | None, builder: _RowBuilder | None = None
) -> AsyncIterator[tuple[dict[str, Any] | None, int]]:
    """Yield ``(row, seq)`` for every examined change after ``since`` up to ``remaining``
    rows, read from storage in pages; filtered-out changes yield ``(None, seq)`` so
    ``last_seq`` can advance."""
    builder = builder or _RowBuilder(db, query)
    sent = 0
    async for page in _pages(db, query, since, remaining):
        left = None if remaining is None else remaining - sent
        async for row, seq in _examine(builder, page, None, left):
            if row is not None:
                sent += 1
            yield row, seq
        if remaining is not None and sent >= remaining:
            return


class _Live:
    """The state of one streaming or long-polled feed: where it is, what it sent, and
    how it gets new changes (the shared notifier; storage only to catch up)."""

    __slots__ = ("builder", "db", "deadline", "last_seq", "query", "sent")

    def __init__(self, db: Database, query: ChangesQuery, since: int) -> None:
        self.db = db
        self.query = query
        self.builder = _RowBuilder(db, query)
        self.last_seq = since
        self.sent = 0
        self.deadline = 0.0
        self.restart_timeout()

    def restart_timeout(self) -> None:
        if not self.query.heartbeat_ms:
            self.deadline = time.monotonic() + self.query.timeout_ms / 1000

    @property
    def remaining(self) -> int | None:
        return None if self.query.limit is None else self.query.limit - self.sent

    @property
    def full(self) -> bool:
        return self.query.limit is not None and self.sent >= self.query.limit

    async def rows(self, source: ChangeBatch | None) -> AsyncIterator[dict[str, Any]]:
        """Rows after :attr:`last_seq` from a shared batch, or from storage when
        ``source`` is ``None``; advances :attr:`last_seq` over what it examined."""
        if source is None:
            changes = _collect(self.db, self.query, self.last_seq, self.remaining, self.builder)
        else:
            changes = _examine(self.builder, source.rows_after(self.last_seq), source, self.remaining)
        async for row, seq in changes:
            self.last_seq = seq if self.query.descending else max(self.last_seq, seq)
            if row is not None:
                self.sent += 1
                yield row
        if source is not None and not self.full:
            self.last_seq = max(self.last_seq, source.last)

    async def next(self) -> ChangeBatch | Signal:
        """Wait for what comes after :attr:`last_seq`: a batch, :data:`CATCH_UP`,
        :data:`TIMEOUT` (a heartbeat is due, or the feed idled for ``timeout``) or
        :data:`CLOSED`.

        A cancelled wait is :data:`CLOSED` too: the request is being cancelled while the
        feed idles (uvicorn's graceful-shutdown timeout, or the client went away), and the
        feed ends with its final line rather than an error (clients resume from it)."""
        q = self.query
        if q.heartbeat_ms:
            timeout = q.heartbeat_ms / 1000
        else:
            timeout = max(0.0, self.deadline - time.monotonic())
        try:
            return await self.db.notifier.wait(self.last_seq, timeout)
        except asyncio.CancelledError:
            return CLOSED

    @property
    def caught_up(self) -> bool:
        """Nothing newer than :attr:`last_seq` is known to this process.  A live feed then
        skips its storage read and waits: writes of this process are published as they
        commit, those of others by the :class:`~couchpoint.notify.SeqWatcher`."""
        return self.last_seq >= self.db.notifier.seq

    async def pending(self, closed: bool = False) -> int:
        """Changes after :attr:`last_seq` (``pending``).  0 without asking storage when the
        feed read everything it could (no ``limit`` cut it) up to the notifier's seq."""
        if self.query.descending or closed or (self.caught_up and not self.full):
            return 0
        return await self.db.store.count_changes(self.last_seq)


async def feed(db: Database, query: ChangesQuery) -> AsyncIterator[bytes]:
    """The body of a ``_changes`` response for ``query``, as a stream of byte chunks."""
    if query.since is None:
        since = (await db.store.info()).update_seq
    else:
        since = query.since
    if query.feed in ("normal", "longpoll"):
        body = _single_response(db, query, since)
    else:
        body = _stream(db, query, since)
    async for chunk in body:
        yield chunk


ROWS_PER_CHUNK = 500
"""Rows joined into one body chunk while catching up (one socket write per chunk)."""


async def _chunks(rows: AsyncIterator[dict[str, Any]]) -> AsyncIterator[list[dict[str, Any]]]:
    """Group the rows that are ready into lists of at most :data:`ROWS_PER_CHUNK`."""
    batch: list[dict[str, Any]] = []
    async for row in rows:
        batch.append(row)
        if len(batch) >= ROWS_PER_CHUNK:
            yield batch
            batch = []
    if batch:
        yield batch


async def _single_response(db: Database, query: ChangesQuery, since: int) -> AsyncIterator[bytes]:
    yield b'{"results":[\n'
    feed = _Live(db, query, 0 if query.descending else since)
    separator = b""
    closed = False
    if query.limit != 0:
        if query.feed == "normal" or not feed.caught_up:
            # Rows go out in chunks of up to ROWS_PER_CHUNK: one ASGI message per chunk,
            # not per row.
            async for rows in _chunks(feed.rows(None)):
                yield separator + b",\n".join(_dumps(row) for row in rows)
                separator = b",\n"
        if query.feed == "longpoll" and feed.sent == 0 and not query.descending:
            while feed.sent == 0:
                woke = await feed.next()
                if woke is TIMEOUT:
                    if not query.heartbeat_ms:
                        break
                    yield b"\n"
                    continue
                if woke is CLOSED:
                    closed = True
                    break
                # The rows and the end of the response in one chunk: one write, not two.
                rows = [row async for row in feed.rows(None if woke is CATCH_UP else woke)]  # type: ignore[arg-type]
                if rows:
                    yield b",\n".join(_dumps(row) for row in rows) + await _end(feed, closed)
                    return
    yield await _end(feed, closed)


async def _end(feed: _Live, closed: bool) -> bytes:
    pending = await feed.pending(closed)
    return b"\n],\n" + b'"last_seq":' + _dumps(feed.last_seq) + b',"pending":' + _dumps(pending) + b"}\n"


async def _stream(db: Database, query: ChangesQuery, since: int) -> AsyncIterator[bytes]:
    eventsource = query.feed == "eventsource"
    heartbeat = b"event: heartbeat\ndata: \n\n" if eventsource else b"\n"
    feed = _Live(db, query, since)
    closed = False

    def frame(row: dict[str, Any]) -> bytes:
        if eventsource:
            return b"data: " + _dumps(row) + b"\nid: " + _dumps(row["seq"]) + b"\n\n"
        return _dumps(row) + b"\n"

    if query.limit != 0 and not feed.caught_up:
        async for rows in _chunks(feed.rows(None)):
            yield b"".join(frame(row) for row in rows)
    if feed.sent == 0:
        # Flush the headers right away (CouchDB sends a first newline while waiting).
        yield heartbeat
    while not feed.full:
        woke = await feed.next()
        if woke is TIMEOUT:
            if not query.heartbeat_ms:
                break
            yield heartbeat
            continue
        if woke is CLOSED:
            closed = True
            break
        sent = feed.sent
        async for rows in _chunks(feed.rows(None if woke is CATCH_UP else woke)):  # type: ignore[arg-type]
            yield b"".join(frame(row) for row in rows)
        if feed.sent > sent:
            feed.restart_timeout()
    if not eventsource:
        pending = await feed.pending(closed)
        yield _dumps({"last_seq": feed.last_seq, "pending": pending}) + b"\n"
