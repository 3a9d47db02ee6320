"""SQLite backend: every database of a server in one SQLite file, through aiosqlite.

Usage::

    async with SQLiteStorage("data/couchpoint.sqlite") as storage:
        db = await storage.create_db("mydb")
        async with db.write() as txn:
            seqs = await txn.put_docs([...])

or call :meth:`SQLiteStorage.open` / :meth:`SQLiteStorage.close` yourself (e.g. in the
ASGI lifespan).  Needs SQLite 3.35 or newer (``RETURNING``).

Connections and concurrency
---------------------------
* **One writer connection** guarded by an ``asyncio.Lock``.  :meth:`SQLiteDbStore.write`
  (and ``create_db`` / ``delete_db``) take the lock, run ``BEGIN IMMEDIATE``, then
  ``COMMIT`` when the block exits normally or ``ROLLBACK`` when it raises.
  ``BEGIN IMMEDIATE`` takes SQLite's write lock, so a writer in another process using the
  same file is serialized as well (it waits up to ``busy_timeout``), and reads inside the
  transaction see a state nobody else can change.  All databases share this one writer:
  transactions are serialized server-wide, and a transaction must not open another one
  (that raises ``RuntimeError`` instead of deadlocking).
* **Reader connections** (``readers``, default 2, used round-robin) serve every read
  outside a transaction.  The file is in WAL mode, so reads never wait for the writer
  and see the last committed state.  Every read method is a single SQL statement, hence
  a consistent snapshot (multi-key reads of more than 9,999 ids / 4,999 revision keys
  are split into several statements).
* Batches are set-based: ``put_docs`` costs at most six statements whatever the batch
  size (``executemany`` for docs, bodies and blob references); multi-key reads bind their
  keys as parameters (``doc_id IN (?, ...)``, or a ``VALUES`` list joined on the primary
  key).

Attachment blobs
----------------
Blobs are files beside the SQLite file, never rows: ``<stem>-attachments/<key[:2]>/<key>``
(e.g. ``data/couchpoint-attachments/ab/ab12...`` for ``data/couchpoint.sqlite``), where
``key`` is the SHA-256 hex of the bytes, so equal bodies are stored once (across
revisions, documents, databases and processes sharing the file).  :meth:`SQLiteStorage.put_blob`
streams into a temp file ``<stem>-attachments/.tmp-<random>`` (up to 1 MiB buffered per
worker-thread hop, SHA-256 and MD5 computed as it goes), fsyncs it (unless
``synchronous="OFF"``), then renames it to its key, or deletes it and refreshes the
existing file's mtime when that key is already stored.  Nothing of a failed or cancelled
``put_blob`` stays.  A blob is alive while a stored revision lists it
(``revision_blobs``); :meth:`SQLiteStorage.collect_garbage` deletes the others once
their mtime is older than the grace period, and stale temp files with them.

Schema (``schema.sql``, ``PRAGMA user_version = 2``)
----------------------------------------------------
JSON columns hold plain JSON text (written by orjson) so applications can query the
data with SQLite's JSON functions; they must not write to these tables.

``server(id, uuid, last_created)``
    One row.  ``uuid``: the server uuid (32 hex).  ``last_created``: the newest
    ``dbs.created`` handed out (keeps ``instance_start_time`` distinct on re-creation).
``dbs(id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT UNIQUE, update_seq, revs_limit, created)``
    One row per database.  ``update_seq``: highest seq handed out, never lowered.
    ``created``: creation time in microseconds since the epoch, as text; it is the
    ``instance_start_time``.  AUTOINCREMENT: a re-created db gets a new ``id``.
``docs(db_id, doc_id, seq, winner_rev, deleted, leaves, tree)``, key ``(db_id, doc_id)``
    One row per document.  ``seq``: its latest update seq (unique index
    ``docs_by_seq(db_id, seq)``).  ``leaves``: JSON ``[[rev, deleted], ...]`` in winning
    order.  ``tree``: JSON of :func:`couchpoint.revtree.to_json`.  ``winner_rev`` /
    ``deleted`` (0/1): the winner, ``leaves[0]``.  Index ``docs_by_deleted(db_id,
    deleted, doc_id)`` serves ``_all_docs`` and the doc counts.
``revs(db_id, doc_id, rev, deleted, size, body)``, key ``(db_id, doc_id, rev)``
    Revision bodies: JSON ``body`` (no ``_id``/``_rev``/``_revisions``/``_deleted``),
    ``size`` = its length in UTF-8 bytes, ``deleted`` 0/1.  Index ``revs_by_size(db_id,
    size)`` lets ``info()`` sum sizes without reading bodies.
``local_docs(db_id, doc_id, rev, body)``, key ``(db_id, doc_id)``
    ``_local`` docs: id without the prefix, integer ``rev``, JSON ``body``.
``db_security(db_id INTEGER PRIMARY KEY, body)``
    The db's ``_security`` object as JSON, once one was stored (no row: never set).
``revision_blobs(db_id, doc_id, rev, blob_key)`` (added by version 2)
    The blobs a stored revision references (``Revision.blobs``), one row each, in order
    (by ``rowid``; a key may repeat).  Rows are removed with their revision's body
    (``drop_revs``, a body stored again, a deleted db).  Indexes
    ``revision_blobs_by_rev(db_id, doc_id, rev)`` and ``revision_blobs_by_key(blob_key)``.
``winning_docs`` (view): ``db, doc_id, rev, seq, body``
    Every non-deleted document with its winning body (``NULL`` if dropped), e.g.
    ``SELECT doc_id, json_extract(body, '$.title') FROM winning_docs WHERE db = 'mydb'``.

Opening a version 1 file migrates it (creates ``revision_blobs``); older couchpoints
then refuse the file.

Ordering: ``doc_id`` uses SQLite's BINARY collation, which compares UTF-8 bytes, the
order ``_all_docs`` needs.  Document ids must be valid Unicode (no lone surrogates).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import itertools
import os
import re
import secrets
import sqlite3
import threading
import time
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator, Sequence
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO, TypeVar

import aiosqlite
import anyio
import orjson
from anyio import CancelScope, to_thread

from couchpoint import errors, revtree
from couchpoint.storage.base import (
    BlobInfo,
    BlobTooLarge,
    DbInfo,
    DocInfo,
    DocSummary,
    DocWrite,
    LocalDoc,
    Revision,
)

__all__ = ["SQLiteDbStore", "SQLiteStorage", "SQLiteWriteTxn"]

SCHEMA_VERSION = 2
"""``PRAGMA user_version`` of the files this module writes."""

MIN_SQLITE_VERSION = (3, 35, 0)
"""``UPDATE ... RETURNING`` appeared in SQLite 3.35."""

_SYNCHRONOUS = frozenset({"OFF", "NORMAL", "FULL", "EXTRA"})
# Keys bound per multi-key read: one statement (so one snapshot) up to these, far below
# SQLite's default limit of 32,766 bound parameters (since 3.32).
_IDS_PER_QUERY = 9_999
_PAIRS_PER_QUERY = 4_999
# Attachment blobs: bytes per read_blob chunk, bytes buffered per put_blob write hop.
_BLOB_CHUNK = 64 * 1024
_BLOB_WRITE_BATCH = 1024 * 1024
_TEMP_PREFIX = ".tmp-"
_BLOB_KEY = re.compile(r"[0-9a-f]{64}")
T = TypeVar("T")

Rows = Iterable[sqlite3.Row]


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


def _chunks(items: list[T], size: int) -> Iterator[list[T]]:
    """``items`` in slices of ``size``.  Keys are bound as parameters, not passed as a
    JSON array: SQLite's JSON functions cut strings at U+0000, legal in a doc id."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _summary(row: Sequence[Any]) -> DocSummary:
    doc_id, seq, leaves = row
    return DocSummary(doc_id, seq, tuple([(rev, bool(deleted)) for rev, deleted in orjson.loads(leaves)]))


class _Reads:
    """Read queries shared by the committed view (readers) and the write transaction."""

    _db_id: int

    async def _fetch(self, sql: str, params: Sequence[Any] = ()) -> Rows:
        raise NotImplementedError

    async def _docs_by_id(self, columns: str, ids: Sequence[str]) -> list[sqlite3.Row]:
        rows: list[sqlite3.Row] = []
        for chunk in _chunks(list(dict.fromkeys(ids)), _IDS_PER_QUERY):
            marks = ", ".join("?" * len(chunk))
            rows += await self._fetch(
                f"SELECT {columns} FROM docs WHERE db_id = ? AND doc_id IN ({marks})", (self._db_id, *chunk)
            )
        return rows

    async def get_docs(self, ids: Sequence[str]) -> dict[str, DocInfo]:
        """``{id: DocInfo}`` for each of ``ids`` that exists; absent ids are left out.

        One query (one snapshot) for up to 9,999 distinct ids."""
        rows = await self._docs_by_id("doc_id, seq, tree", ids)
        return {
            doc_id: DocInfo(doc_id, seq, revtree.from_json(orjson.loads(tree))) for doc_id, seq, tree in rows
        }

    async def get_summaries(self, ids: Sequence[str]) -> dict[str, DocSummary]:
        """``{id: DocSummary}`` for each of ``ids`` that exists (no tree is decoded).

        One query (one snapshot) for up to 9,999 distinct ids."""
        return {row[0]: _summary(row) for row in await self._docs_by_id("doc_id, seq, leaves", ids)}

    async def get_revisions(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], Revision]:
        """``{(doc id, rev): Revision}`` for each key whose body is stored; others are
        left out.  Each revision's ``blobs`` come back as stored (order and repeats
        kept).  One query (one snapshot) for up to 4,999 distinct keys."""
        rows: list[sqlite3.Row] = []
        for chunk in _chunks(list(dict.fromkeys(keys)), _PAIRS_PER_QUERY):
            values = ", ".join("(?, ?)" for _ in chunk)
            rows += await self._fetch(
                f"WITH k (doc_id, rev) AS (VALUES {values})"
                " SELECT r.doc_id, r.rev, r.deleted, r.body,"
                # The references are looked up per row only when the db has any (the
                # EXISTS is computed once per statement).
                " CASE WHEN EXISTS (SELECT 1 FROM revision_blobs WHERE db_id = ?) THEN"
                " (SELECT json_group_array(blob_key) FROM (SELECT b.blob_key FROM revision_blobs AS b"
                "  WHERE b.db_id = r.db_id AND b.doc_id = r.doc_id AND b.rev = r.rev ORDER BY b.rowid))"
                " ELSE '[]' END"
                " FROM k CROSS JOIN revs AS r"
                " WHERE r.db_id = ? AND r.doc_id = k.doc_id AND r.rev = k.rev",
                (*itertools.chain.from_iterable(chunk), self._db_id, self._db_id),
            )
        return {
            (doc_id, rev): Revision(
                doc_id,
                rev,
                bool(deleted),
                orjson.loads(body),
                () if blobs == "[]" else tuple(orjson.loads(blobs)),
            )
            for doc_id, rev, deleted, body, blobs in rows
        }

    async def get_local(self, doc_id: str) -> LocalDoc | None:
        """The ``_local`` doc ``doc_id`` (without the ``_local/`` prefix), or ``None``."""
        rows = list(
            await self._fetch(
                "SELECT rev, body FROM local_docs WHERE db_id = ? AND doc_id = ?", (self._db_id, doc_id)
            )
        )
        if not rows:
            return None
        rev, body = rows[0]
        return LocalDoc(doc_id, rev, orjson.loads(body))

    async def get_security(self) -> dict[str, Any] | None:
        """The stored ``_security`` object, or ``None`` if none was ever stored."""
        rows = list(await self._fetch("SELECT body FROM db_security WHERE db_id = ?", (self._db_id,)))
        return orjson.loads(rows[0][0]) if rows else None


class SQLiteWriteTxn(_Reads):
    """The writer's view inside :meth:`SQLiteDbStore.write` (see
    :class:`couchpoint.storage.base.WriteTxn`).  Reads see the transaction's own writes.
    Using it after its ``async with`` block ended raises ``RuntimeError``."""

    def __init__(self, conn: aiosqlite.Connection, db_id: int) -> None:
        self._conn = conn
        self._db_id = db_id
        self._open = True

    def _check(self) -> aiosqlite.Connection:
        if not self._open:
            raise RuntimeError("write transaction already ended")
        return self._conn

    async def _fetch(self, sql: str, params: Sequence[Any] = ()) -> Rows:
        return await self._check().execute_fetchall(sql, params)

    async def put_docs(self, writes: Sequence[DocWrite]) -> list[int]:
        """Store each write (at most one per id) and give each doc a new seq.

        Returns the new seqs in input order: consecutive, above every seq this database
        ever handed out (``dbs.update_seq`` grows inside the transaction, so a rolled
        back batch hands out nothing).  Per write, ``drop_revs`` bodies are removed
        before ``revisions`` are stored (a rev in both is kept); each stored revision's
        ``blobs`` replace the references its rev had (``revision_blobs``), and a dropped
        body takes its references along.  Raises ``ValueError`` for an empty tree and
        ``errors.db_not_found()`` if the db was deleted.

        Cost: one hop to the writer's thread, with at most six statements whatever the
        batch size (seq, dropped bodies, cleared blob references, docs, bodies, new blob
        references; the blob references are only cleared when this db has any).
        """
        if not writes:
            return []
        conn = self._check()
        db_id = self._db_id
        # Encode everything first: a bad tree or body fails before any SQL runs.
        docs: list[tuple[Any, ...]] = []
        rev_rows: list[tuple[Any, ...]] = []
        drop_rows: list[tuple[Any, ...]] = []
        unref_rows: list[tuple[Any, ...]] = []  # revs whose blob references go (dropped or rewritten)
        blob_rows: list[tuple[Any, ...]] = []
        dumps = orjson.dumps
        for write in writes:
            doc_id = write.id
            leaves = revtree.leaf_summary(write.tree)
            if not leaves:
                raise ValueError(f"empty revision tree for document {doc_id!r}")
            winner, deleted = leaves[0]
            docs.append(
                (
                    doc_id,
                    winner,
                    int(deleted),
                    dumps(leaves).decode(),
                    dumps(revtree.to_json(write.tree)).decode(),
                )
            )
            if write.drop_revs:
                drop_rows.extend((db_id, doc_id, rev) for rev in write.drop_revs)
            for revision in write.revisions:
                body = dumps(revision.body)
                rev_rows.append(
                    (db_id, doc_id, revision.rev, int(revision.deleted), len(body), body.decode())
                )
                unref_rows.append((db_id, doc_id, revision.rev))
                if revision.blobs:
                    blob_rows.extend((db_id, doc_id, revision.rev, key) for key in revision.blobs)
        unref_rows += drop_rows
        first: int = await conn._execute(
            _put_docs, conn._conn, db_id, docs, rev_rows, drop_rows, unref_rows, blob_rows
        )
        return list(range(first, first + len(writes)))

    async def put_local(self, doc: LocalDoc) -> None:
        """Create or replace the ``_local`` doc ``doc.id`` (stored as given: the caller
        computes the new ``rev``)."""
        await self._check().execute(
            "INSERT INTO local_docs (db_id, doc_id, rev, body) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (db_id, doc_id) DO UPDATE SET rev = excluded.rev, body = excluded.body",
            (self._db_id, doc.id, doc.rev, _json(doc.body)),
        )

    async def delete_local(self, doc_id: str) -> bool:
        """Delete a ``_local`` doc; ``False`` if it did not exist."""
        rows = await self._check().execute_fetchall(
            "DELETE FROM local_docs WHERE db_id = ? AND doc_id = ? RETURNING 1", (self._db_id, doc_id)
        )
        return bool(list(rows))

    async def set_revs_limit(self, limit: int) -> None:
        """Persist the database's ``revs_limit`` (``GET /{db}/_revs_limit``); the value
        is stored as given, validation is the caller's."""
        await self._check().execute("UPDATE dbs SET revs_limit = ? WHERE id = ?", (limit, self._db_id))

    async def put_security(self, security: dict[str, Any]) -> None:
        """Store the db's ``_security`` object (replacing the previous one)."""
        await self._check().execute(
            "INSERT INTO db_security (db_id, body) VALUES (?, ?)"
            " ON CONFLICT (db_id) DO UPDATE SET body = excluded.body",
            (self._db_id, _json(security)),
        )


class SQLiteDbStore(_Reads):
    """One database in a :class:`SQLiteStorage` (see
    :class:`couchpoint.storage.base.DbStore`).

    Obtain it from :meth:`SQLiteStorage.create_db` / :meth:`SQLiteStorage.get_db`; it is a
    cheap handle bound to the db's row id.  After the db is deleted, ``info()`` and
    ``write()`` raise ``errors.db_not_found()`` and the other reads return nothing (even
    if a db with the same name was created since).  Every method raises
    ``RuntimeError`` once the storage is closed.
    """

    def __init__(self, storage: SQLiteStorage, db_id: int, name: str) -> None:
        self._storage = storage
        self._db_id = db_id
        self.name = name
        self._counts: tuple[int, int, int, int] | None = None  # update_seq, live, deleted, external
        self._pending: dict[int, int] = {}  # since -> count_changes(since); key -1: their update_seq

    def __repr__(self) -> str:
        return f"SQLiteDbStore({self.name!r}, id={self._db_id})"

    async def _fetch(self, sql: str, params: Sequence[Any] = ()) -> Rows:
        return await self._storage._read(sql, params)

    async def info(self) -> DbInfo:
        """Counts, ``update_seq``, ``instance_start_time``, ``revs_limit`` and sizes
        (CouchDB ``GET /{db}``), from one consistent snapshot.

        ``doc_count`` / ``doc_del_count``: docs whose winner is live / a tombstone
        (``_local`` docs excluded).  Sizes in bytes: ``external`` and ``active`` = total
        JSON size of the stored revision bodies (as the memory backend); ``file`` = size
        of the whole SQLite file (``page_count * page_size``), which all databases share.
        Raises ``errors.db_not_found()`` if the db was deleted.  Cost: one reader hop.
        The counts and sizes scan covering indexes, O(docs + revisions) of this db
        (about 1 ms per 10,000 docs), so they are kept with the ``update_seq`` they were
        read at and read again only once it moved: every change to them commits a new
        ``update_seq`` (``put_docs``, in this process or another), and a re-created db
        is a new handle.  Replicators ask for the info once per batch.
        """
        cached = self._counts
        rows = list(
            await self._fetch(
                # One statement (one snapshot); SQLite evaluates the CASE lazily, so the
                # scans only run when update_seq moved.
                "SELECT name, update_seq, revs_limit, created,"
                " (SELECT page_count FROM pragma_page_count()) * (SELECT page_size FROM pragma_page_size()),"
                " update_seq = ?1,"
                " CASE WHEN update_seq = ?1 THEN NULL ELSE"
                "  (SELECT COUNT(*) FROM docs WHERE db_id = dbs.id AND deleted = 0) END,"
                " CASE WHEN update_seq = ?1 THEN NULL ELSE"
                "  (SELECT COUNT(*) FROM docs WHERE db_id = dbs.id AND deleted = 1) END,"
                " CASE WHEN update_seq = ?1 THEN NULL ELSE"
                "  (SELECT COALESCE(SUM(size), 0) FROM revs WHERE db_id = dbs.id) END"
                " FROM dbs WHERE id = ?2",
                (None if cached is None else cached[0], self._db_id),
            )
        )
        if not rows:
            raise errors.db_not_found()
        name, update_seq, revs_limit, created, file_size, same, *fresh = rows[0]
        if same:
            assert cached is not None
            counts = cached[1:]
        else:
            counts = tuple(fresh)
            self._counts = (update_seq, *counts)
        live, deleted, external = counts
        return DbInfo(
            name=name,
            update_seq=update_seq,
            doc_count=live,
            doc_del_count=deleted,
            instance_start_time=created,
            revs_limit=revs_limit,
            sizes={"active": external, "external": external, "file": file_size},
        )

    async def changes(self, since: int, limit: int, *, descending: bool = False) -> list[DocSummary]:
        """Docs with ``seq > since`` by seq ascending, at most ``limit`` (``limit >= 0``);
        with ``descending`` the ``limit`` newest docs, ``since`` ignored.  Each doc
        appears once, at its latest seq (CouchDB ``_changes``)."""
        if descending:
            sql = "SELECT doc_id, seq, leaves FROM docs WHERE db_id = ? ORDER BY seq DESC LIMIT ?"
            params: tuple[Any, ...] = (self._db_id, limit)
        else:
            sql = "SELECT doc_id, seq, leaves FROM docs WHERE db_id = ? AND seq > ? ORDER BY seq LIMIT ?"
            params = (self._db_id, since, limit)
        return [_summary(row) for row in await self._fetch(sql, params)]

    async def count_changes(self, since: int) -> int:
        """How many docs have ``seq > since`` (``_changes``' ``pending``).

        Counting walks the ``docs_by_seq`` entries after ``since`` (about 20 ns each),
        and a replicator asks again for every batch of 100: so the counts of this handle
        are kept with the ``update_seq`` they hold at (up to :data:`_COUNTS_KEPT` of
        them), and while ``update_seq`` did not move a new count starts from the nearest
        kept one and only walks the seqs in between.  One reader hop, one snapshot."""
        kept = self._pending
        kept_seq = kept.get(-1)
        base = min((k for k in kept if k != -1), key=lambda k: abs(k - since), default=None)
        if base is not None and kept_seq is not None and abs(base - since) >= kept_seq - since:
            base = None  # counting everything after since walks fewer entries
        base_count = 0 if base is None else kept[base]
        low, high = sorted((since, since if base is None else base))
        rows = list(
            await self._fetch(
                # One statement (one snapshot): the seqs between the kept count and
                # ``since`` while update_seq is still the kept counts' one, else all of
                # them (the CASE is evaluated lazily).
                "SELECT update_seq, update_seq = ?1,"
                " CASE WHEN update_seq = ?1 THEN"
                "  (SELECT COUNT(*) FROM docs WHERE db_id = ?2 AND seq > ?3 AND seq <= ?4) END,"
                " CASE WHEN update_seq = ?1 THEN NULL ELSE"
                "  (SELECT COUNT(*) FROM docs WHERE db_id = ?2 AND seq > ?5) END"
                " FROM dbs WHERE id = ?2",
                (kept_seq if base is not None else None, self._db_id, low, high, since),
            )
        )
        if not rows:
            return 0  # deleted db: nothing pending
        update_seq, same, between, full = rows[0]
        if same:
            assert base is not None
            count = base_count - between if since >= base else base_count + between
        else:
            count = full
        if kept.get(-1) != update_seq:
            kept.clear()
            kept[-1] = update_seq
        kept.pop(since, None)
        kept[since] = count
        while len(kept) > _COUNTS_KEPT + 1:
            del kept[next(k for k in kept if k != -1)]
        return count

    async def all_docs(
        self,
        *,
        start: str | None = None,
        end: str | None = None,
        inclusive_end: bool = True,
        descending: bool = False,
        skip: int = 0,
        limit: int | None = None,
    ) -> list[DocSummary]:
        """Live docs (winner not deleted) by id in UTF-8 byte order (reversed when
        ``descending``) from ``start`` to ``end`` (``None`` = unbounded; with
        ``descending`` ``start`` is the high end), ``end`` excluded unless
        ``inclusive_end``, after ``skip`` rows, at most ``limit`` (CouchDB ``_all_docs``).
        ``skip`` and ``limit`` must not be negative."""
        where = ["db_id = ?", "deleted = 0"]
        params: list[Any] = [self._db_id]
        low, high = (end, start) if descending else (start, end)
        low_inclusive = inclusive_end or not descending
        high_inclusive = inclusive_end or descending
        if low is not None:
            where.append("doc_id >= ?" if low_inclusive else "doc_id > ?")
            params.append(low)
        if high is not None:
            where.append("doc_id <= ?" if high_inclusive else "doc_id < ?")
            params.append(high)
        order = "DESC" if descending else "ASC"
        params += [-1 if limit is None else limit, skip]
        rows = await self._fetch(
            f"SELECT doc_id, seq, leaves FROM docs WHERE {' AND '.join(where)}"
            f" ORDER BY doc_id {order} LIMIT ? OFFSET ?",
            params,
        )
        return [_summary(row) for row in rows]

    @asynccontextmanager
    async def write(self) -> AsyncIterator[SQLiteWriteTxn]:
        """The database's write transaction (``BEGIN IMMEDIATE`` ... ``COMMIT``).

        Yields a :class:`SQLiteWriteTxn`; commits when the block exits normally, rolls
        back when it raises.  Waits for the server-wide writer lock, then for SQLite's
        write lock (other processes, up to ``busy_timeout``; ``sqlite3.OperationalError``
        "database is locked" after that).  Raises ``errors.db_not_found()`` if the db was
        deleted and ``RuntimeError`` when called inside another transaction of the same
        storage.
        """
        async with self._storage._transaction(self._db_id) as conn:
            txn = SQLiteWriteTxn(conn, self._db_id)
            try:
                yield txn
            finally:
                txn._open = False


class SQLiteStorage:
    """A server's databases in one SQLite file (see
    :class:`couchpoint.storage.base.Storage`).

    ``path``: the file (created with its parent directories if missing).
    ``synchronous``: SQLite's ``PRAGMA synchronous`` for the writer: ``"FULL"``
    (default: a commit is durable when ``write()`` returns, as CouchDB 3's
    ``_ensure_full_commit`` promises), ``"NORMAL"`` (faster; in WAL mode the last commits
    may be lost on power failure, never corrupted), ``"EXTRA"`` or ``"OFF"``; anything
    else raises ``ValueError``.  ``busy_timeout``: seconds to wait for another
    process's write lock.  ``readers``: reader connections (at least 1).
    Attachment blobs live in :attr:`attachments_dir`, ``<stem>-attachments`` beside
    ``path`` (created on the first :meth:`put_blob`).

    Several :class:`SQLiteStorage` objects (in one or many processes) may open the same
    file; their writes are serialized by SQLite and seqs stay unique.  Call
    :meth:`open` first (or use ``async with``); methods raise ``RuntimeError`` while
    closed.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        synchronous: str = "FULL",
        busy_timeout: float = 30.0,
        readers: int = 2,
    ) -> None:
        mode = synchronous.upper()
        if mode not in _SYNCHRONOUS:
            raise ValueError(f"synchronous must be one of {sorted(_SYNCHRONOUS)}, not {synchronous!r}")
        if readers < 1:
            raise ValueError("readers must be at least 1")
        if busy_timeout < 0:
            raise ValueError("busy_timeout must not be negative")
        self.path = Path(path)
        self.attachments_dir = self.path.parent / f"{self.path.stem}-attachments"
        """Where the attachment blobs live: ``<key[:2]>/<key>`` files (module docstring)."""
        self._synchronous = mode
        self._busy_ms = int(busy_timeout * 1000)
        self._reader_count = readers
        self._writer: aiosqlite.Connection | None = None
        self._readers: list[aiosqlite.Connection] = []
        self._next_reader = itertools.count()
        self._uuid = ""
        self._state_lock = asyncio.Lock()
        self._write_lock = asyncio.Lock()
        self._write_owner: asyncio.Task[Any] | None = None
        self._stores: dict[str, SQLiteDbStore] = {}  # name -> handle on its current db id
        self._blob_temps: set[str] = set()  # temp files of this object's running put_blob calls

    def __repr__(self) -> str:
        state = "open" if self._writer is not None else "closed"
        return f"SQLiteStorage({str(self.path)!r}, {state})"

    # -- lifecycle ------------------------------------------------------------------------

    async def open(self) -> None:
        """Connect, switch the file to WAL mode and create the schema if needed.

        Idempotent.  Raises ``RuntimeError`` if SQLite is older than 3.35 or the file
        holds a newer schema version, ``sqlite3.Error`` if the file is not a database.
        """
        async with self._state_lock:
            if self._writer is not None:
                return
            if sqlite3.sqlite_version_info < MIN_SQLITE_VERSION:
                raise RuntimeError(f"couchpoint needs SQLite >= 3.35, found {sqlite3.sqlite_version}")
            self.path.parent.mkdir(parents=True, exist_ok=True)
            opened: list[aiosqlite.Connection] = []
            try:
                writer = await self._connect(opened)
                await self._init_schema(writer)
                for _ in range(self._reader_count):
                    reader = await self._connect(opened)
                    await reader.execute("PRAGMA query_only = ON")
            except BaseException:
                for conn in reversed(opened):
                    await conn.close()
                raise
            self._writer = writer
            self._readers = opened[1:]

    async def _connect(self, opened: list[aiosqlite.Connection]) -> aiosqlite.Connection:
        conn = await aiosqlite.connect(self.path, isolation_level=None)
        opened.append(conn)
        await conn.execute(f"PRAGMA busy_timeout = {self._busy_ms}")
        return conn

    async def _init_schema(self, writer: aiosqlite.Connection) -> None:
        mode = await self._enable_wal(writer)
        if mode.lower() != "wal":
            raise RuntimeError(f"cannot use WAL mode on {self.path} (journal_mode={mode})")
        await writer.execute(f"PRAGMA synchronous = {self._synchronous}")
        version = list(await writer.execute_fetchall("PRAGMA user_version"))[0][0]
        if version > SCHEMA_VERSION:
            raise RuntimeError(
                f"{self.path} has schema version {version}; this couchpoint knows {SCHEMA_VERSION}"
            )
        script = resources.files("couchpoint.storage").joinpath("schema.sql").read_text("utf-8")
        try:
            await writer.executescript(script)
        except BaseException:
            await _rollback_quietly(writer)
            raise
        rows = list(await writer.execute_fetchall("SELECT uuid FROM server WHERE id = 1"))
        self._uuid = rows[0][0]

    async def _enable_wal(self, writer: aiosqlite.Connection) -> str:
        """``PRAGMA journal_mode = WAL``, retried while another connection holds a lock.

        Switching a new file to WAL needs an exclusive lock, and SQLite answers
        ``SQLITE_BUSY`` at once (without the busy handler) when two connections race for
        it, as when several processes open a fresh file together."""
        deadline = time.monotonic() + self._busy_ms / 1000
        delay = 0.001
        while True:
            try:
                rows = list(await writer.execute_fetchall("PRAGMA journal_mode = WAL"))
                return str(rows[0][0])
            except sqlite3.OperationalError as exc:
                code = getattr(exc, "sqlite_errorcode", 0) & 0xFF  # primary result code
                busy = code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
                if not busy or time.monotonic() + delay > deadline:
                    raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.1)

    async def close(self) -> None:
        """Wait for the running write transaction, then close every connection.

        Idempotent; committed data stays durable.  Raises ``RuntimeError`` when called
        from inside a write transaction of this storage."""
        async with self._state_lock:
            if self._writer is None:
                return
            self._check_not_nested()
            async with self._write_lock:
                writer, readers = self._writer, self._readers
                self._writer, self._readers = None, []
                self._stores.clear()
                try:
                    for reader in readers:
                        await reader.close()
                finally:
                    await writer.close()

    async def __aenter__(self) -> SQLiteStorage:
        await self.open()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # -- internals ------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._writer is None:
            raise RuntimeError(f"{self!r} is not open")

    def _blob_path(self, key: str) -> Path | None:
        """The file of blob ``key``, or ``None`` if ``key`` is no SHA-256 hex (never a
        path outside :attr:`attachments_dir`)."""
        if not isinstance(key, str) or not _BLOB_KEY.fullmatch(key):
            return None
        return self.attachments_dir / key[:2] / key

    def _check_not_nested(self) -> None:
        if self._write_owner is not None and self._write_owner is asyncio.current_task():
            raise RuntimeError("already inside a write transaction of this storage")

    def _reader(self) -> aiosqlite.Connection:
        readers = self._readers
        if not readers:
            raise RuntimeError(f"{self!r} is not open")
        return readers[next(self._next_reader) % len(readers)]

    async def _read(self, sql: str, params: Sequence[Any] = ()) -> Rows:
        return await self._reader().execute_fetchall(sql, params)

    @asynccontextmanager
    async def _transaction(self, db_id: int | None = None) -> AsyncIterator[aiosqlite.Connection]:
        """``BEGIN IMMEDIATE`` on the writer under the writer lock; ``COMMIT`` on normal
        exit, ``ROLLBACK`` on any exception (cancellation included).  With ``db_id``,
        raises ``errors.db_not_found()`` (after rolling back) unless that db exists,
        checked in the same thread hop as the ``BEGIN``."""
        self._check_not_nested()
        async with self._write_lock:
            conn = self._writer
            if conn is None:
                raise RuntimeError(f"{self!r} is not open")
            self._write_owner = asyncio.current_task()
            try:
                try:
                    exists = await conn._execute(_begin, conn._conn, db_id)
                except BaseException:
                    # Cancelled while BEGIN still runs in the connection's thread: the
                    # ROLLBACK is queued behind it, so the connection ends up clean.
                    await _rollback_quietly(conn)
                    raise
                try:
                    if not exists:
                        raise errors.db_not_found()
                    yield conn
                except BaseException:
                    await _rollback_quietly(conn)
                    raise
                try:
                    await conn.execute("COMMIT")
                except BaseException:
                    await _rollback_quietly(conn)
                    raise
            finally:
                self._write_owner = None

    # -- Storage protocol -----------------------------------------------------------------

    async def server_uuid(self) -> str:
        """The server's uuid: 32 lowercase hex chars, generated when the file was
        created and kept in it (PouchDB and CouchDB build replication ids from it)."""
        if self._writer is None:
            raise RuntimeError(f"{self!r} is not open")
        return self._uuid

    async def all_dbs(self) -> list[str]:
        """Database names, ascending by code point (``GET /_all_dbs``)."""
        return [name for (name,) in await self._read("SELECT name FROM dbs ORDER BY name")]

    async def create_db(self, name: str) -> SQLiteDbStore:
        """Create the (already validated) database ``name``.

        Raises ``errors.db_exists()`` (412 ``file_exists``) if it exists.  Its
        ``instance_start_time`` is the creation time in microseconds, and always differs
        from that of any db created before in this file."""
        async with self._transaction() as conn:
            if list(await conn.execute_fetchall("SELECT 1 FROM dbs WHERE name = ?", (name,))):
                raise errors.db_exists()
            rows = await conn.execute_fetchall(
                "UPDATE server SET last_created = max(?, last_created + 1) WHERE id = 1"
                " RETURNING last_created",
                (time.time_ns() // 1000,),
            )
            created = list(rows)[0][0]
            rows = await conn.execute_fetchall(
                "INSERT INTO dbs (name, update_seq, revs_limit, created) VALUES (?, 0, 1000, ?) RETURNING id",
                (name, str(created)),
            )
            db_id = list(rows)[0][0]
        return self._store(db_id, name)

    async def delete_db(self, name: str) -> None:
        """Delete the database ``name`` and all its rows in one transaction.

        Raises ``errors.db_not_found()`` (404) if it does not exist."""
        async with self._transaction() as conn:
            rows = list(await conn.execute_fetchall("SELECT id FROM dbs WHERE name = ?", (name,)))
            if not rows:
                raise errors.db_not_found()
            db_id = rows[0][0]
            for table in ("revision_blobs", "revs", "docs", "local_docs", "db_security"):
                await conn.execute(f"DELETE FROM {table} WHERE db_id = ?", (db_id,))
            await conn.execute("DELETE FROM dbs WHERE id = ?", (db_id,))
        self._stores.pop(name, None)

    async def get_db(self, name: str) -> SQLiteDbStore | None:
        """A handle on the database ``name``, or ``None`` if it does not exist.

        Returns the same object for as long as the db exists, and a new one once it was
        deleted and re-created (also by another process), so callers may cache per-db
        state keyed by the handle's identity (as :class:`couchpoint.database.Server`)."""
        rows = list(await self._read("SELECT id FROM dbs WHERE name = ?", (name,)))
        if not rows:
            self._stores.pop(name, None)
            return None
        return self._store(rows[0][0], name)

    def _store(self, db_id: int, name: str) -> SQLiteDbStore:
        store = self._stores.get(name)
        if store is None or store._db_id != db_id:
            store = self._stores[name] = SQLiteDbStore(self, db_id, name)
        return store

    async def update_seqs(self) -> dict[str, int]:
        """``{db name: update_seq}`` of every database, in one query on a reader (sees
        what other processes committed on this file)."""
        return {name: seq for name, seq in await self._read("SELECT name, update_seq FROM dbs")}

    # -- attachment blobs -----------------------------------------------------------------

    async def put_blob(self, chunks: AsyncIterable[bytes], *, max_size: int | None = None) -> BlobInfo:
        """Stream ``chunks`` into a blob file and return its :class:`BlobInfo`.

        The bytes go to a temp file in :attr:`attachments_dir` in worker threads (one hop
        per 1 MiB buffered, or per larger chunk), hashed as they go; the file is fsynced,
        then renamed to its key, or dropped if that key is stored already (whose mtime
        is then refreshed, so a concurrent :meth:`collect_garbage` spares it).  Memory
        use stays about 1 MiB plus one chunk.  Raises :class:`BlobTooLarge` once more
        than ``max_size`` bytes arrived; on that or any other exception (cancellation
        included) the temp file is removed and nothing is kept.
        """
        self._check_open()
        writer = _BlobWriter(self.attachments_dir, durable=self._synchronous != "OFF")
        self._blob_temps.add(str(writer.path))
        size = 0
        try:
            await to_thread.run_sync(writer.create)
            pending: list[bytes] = []
            buffered = 0
            async for chunk in chunks:
                if not chunk:
                    continue
                size += len(chunk)
                if max_size is not None and size > max_size:
                    raise BlobTooLarge(size)
                pending.append(chunk if isinstance(chunk, bytes) else bytes(chunk))
                buffered += len(chunk)
                if buffered >= _BLOB_WRITE_BATCH:
                    await to_thread.run_sync(writer.write, pending)
                    pending, buffered = [], 0
            if pending:
                await to_thread.run_sync(writer.write, pending)
            key = await to_thread.run_sync(writer.finish)
        except BaseException:
            # Shielded: waits for a write still running in an abandoned worker thread.
            with CancelScope(shield=True):
                await to_thread.run_sync(writer.discard)
            raise
        finally:
            self._blob_temps.discard(str(writer.path))
        return BlobInfo(key, size, "md5-" + base64.b64encode(writer.md5.digest()).decode())

    async def blob_length(self, key: str) -> int | None:
        """Stored length of blob ``key`` (a ``stat`` of its file), or ``None``."""
        self._check_open()
        path = self._blob_path(key)
        if path is None:
            return None
        try:
            stat = await anyio.Path(path).stat()
        except (FileNotFoundError, NotADirectoryError):
            return None
        return stat.st_size

    async def read_blob(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """Stream bytes ``[start, end)`` of blob ``key`` in chunks of up to 64 KiB, one
        worker-thread read each (``start``/``end`` as a Python slice: ``end`` beyond the
        length is clipped, ``end <= start`` yields nothing).  Raises ``KeyError`` when
        iterated if the blob does not exist.  The file stays open while iterating, so a
        :meth:`collect_garbage` meanwhile does not cut the stream short."""
        self._check_open()
        path = self._blob_path(key)
        if path is None:
            raise KeyError(key)
        try:
            fd, length = await to_thread.run_sync(_open_blob, path)
        except (FileNotFoundError, NotADirectoryError):
            raise KeyError(key) from None
        try:
            offset, stop, _ = slice(start, end).indices(length)
            while offset < stop:
                data = await to_thread.run_sync(os.pread, fd, min(_BLOB_CHUNK, stop - offset), offset)
                if not data:  # cannot happen: blob files are never rewritten in place
                    raise OSError(f"blob {key} is shorter than {length} bytes")
                offset += len(data)
                yield data
        finally:
            os.close(fd)

    async def collect_garbage(self, grace_s: float = 600.0) -> int:
        """Delete the blob files no stored revision references (``revision_blobs``)
        whose mtime is at least ``grace_s`` seconds old, and temp files as old (left by
        crashed writers); returns how many blobs were deleted (temp files not counted).

        Listing and deleting run in worker threads; the references are read on a reader
        (one query per 9,999 candidates).  A candidate is moved aside before it is
        deleted and put back if its mtime turns out fresh, so a :meth:`put_blob` of the
        same bytes racing with the collection keeps its blob."""
        self._check_open()
        cutoff = time.time() - grace_s
        candidates = await to_thread.run_sync(
            _scan_blobs, self.attachments_dir, cutoff, frozenset(self._blob_temps)
        )
        referenced: set[str] = set()
        for chunk in _chunks(candidates, _IDS_PER_QUERY):
            marks = ", ".join("?" * len(chunk))
            rows = await self._read(
                f"SELECT DISTINCT blob_key FROM revision_blobs WHERE blob_key IN ({marks})", chunk
            )
            referenced.update(key for (key,) in rows)
        doomed = [key for key in candidates if key not in referenced]
        if not doomed:
            return 0
        return await to_thread.run_sync(_remove_blobs, self.attachments_dir, doomed, cutoff)


# -- blob files (these functions run in worker threads) -----------------------------------


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _BlobWriter:
    """The temp file of one :meth:`SQLiteStorage.put_blob`.

    Every method runs in a worker thread under one lock, so :meth:`discard` (run after a
    failure or cancellation) waits for a write still running in an abandoned thread, and
    nothing is written once it was discarded."""

    def __init__(self, root: Path, *, durable: bool) -> None:
        self.root = root
        self.path = root / f"{_TEMP_PREFIX}{secrets.token_hex(16)}"
        self.sha256 = hashlib.sha256()
        self.md5 = hashlib.md5(usedforsecurity=False)
        self._durable = durable
        self._lock = threading.Lock()
        self._file: BinaryIO | None = None
        self._ended = False  # finished or discarded

    def create(self) -> None:
        with self._lock:
            if self._ended:
                return
            if not self.root.is_dir():
                self.root.mkdir(parents=True, exist_ok=True)
                if self._durable:
                    _fsync_dir(self.root.parent)
            self._file = open(self.path, "xb")  # closed by finish() or discard()

    def write(self, chunks: list[bytes]) -> None:
        with self._lock:
            if self._ended or self._file is None:
                return
            for chunk in chunks:
                self.sha256.update(chunk)
                self.md5.update(chunk)
                self._file.write(chunk)

    def finish(self) -> str:
        """Flush, fsync and close the temp file, then store it under its key (or drop it
        if the key exists); returns the key."""
        with self._lock:
            if self._ended or self._file is None:
                raise RuntimeError("blob writer already ended")
            self._file.flush()
            if self._durable:
                os.fsync(self._file.fileno())
            self._file.close()
            key = self.sha256.hexdigest()
            target = self.root / key[:2] / key
            try:
                os.utime(target)  # already stored: reuse it, fresh for collect_garbage
            except FileNotFoundError:
                if not target.parent.is_dir():
                    target.parent.mkdir(exist_ok=True)
                    if self._durable:
                        _fsync_dir(self.root)
                os.replace(self.path, target)
                if self._durable:
                    _fsync_dir(target.parent)
            else:
                os.unlink(self.path)
            self._ended = True
            return key

    def discard(self) -> None:
        """Close and delete the temp file (no-op once finished)."""
        with self._lock:
            if self._ended:
                return
            self._ended = True
            if self._file is not None:
                self._file.close()
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass


def _open_blob(path: Path) -> tuple[int, int]:
    fd = os.open(path, os.O_RDONLY)
    try:
        return fd, os.fstat(fd).st_size
    except BaseException:
        os.close(fd)
        raise


def _scan_blobs(root: Path, cutoff: float, writing: frozenset[str]) -> list[str]:
    """Keys of the blob files in ``root`` modified at or before ``cutoff``; deletes
    temp files untouched since ``cutoff`` on the way (except those in ``writing``)."""
    keys: list[str] = []
    try:
        top = list(os.scandir(root))
    except FileNotFoundError:
        return keys
    for entry in top:
        try:
            if entry.name.startswith(_TEMP_PREFIX):
                stat = entry.stat(follow_symlinks=False)
                # ctime too: a blob moved aside by _remove_blobs keeps its old mtime.
                if entry.path not in writing and max(stat.st_mtime, stat.st_ctime) <= cutoff:
                    os.unlink(entry.path)
            elif len(entry.name) == 2 and entry.is_dir(follow_symlinks=False):
                with os.scandir(entry.path) as files:
                    for file in files:
                        if (
                            _BLOB_KEY.fullmatch(file.name)
                            and file.name.startswith(entry.name)
                            and file.stat(follow_symlinks=False).st_mtime <= cutoff
                        ):
                            keys.append(file.name)
        except FileNotFoundError:  # removed meanwhile (another process collecting)
            continue
    return keys


def _remove_blobs(root: Path, keys: list[str], cutoff: float) -> int:
    """Delete the blob files ``keys`` unless modified after ``cutoff``; returns how many
    were deleted.  Each file is first renamed aside, then its mtime checked: a
    :meth:`SQLiteStorage.put_blob` of the same bytes refreshes it (or, if the rename won,
    stores a new file), so a blob handed out meanwhile survives."""
    deleted = 0
    for key in keys:
        path = root / key[:2] / key
        aside = root / f"{_TEMP_PREFIX}{secrets.token_hex(16)}"
        try:
            os.rename(path, aside)
        except FileNotFoundError:
            continue
        if os.stat(aside).st_mtime > cutoff:
            os.replace(aside, path)  # refreshed meanwhile; same bytes if stored again
            continue
        os.unlink(aside)
        deleted += 1
    return deleted


# -- statements run in the writer's thread (one aiosqlite hop each) -------------------------


def _put_docs(
    db: sqlite3.Connection,
    db_id: int,
    docs: list[tuple[Any, ...]],
    rev_rows: list[tuple[Any, ...]],
    drop_rows: list[tuple[Any, ...]],
    unref_rows: list[tuple[Any, ...]],
    blob_rows: list[tuple[Any, ...]],
) -> int:
    """The statements of :meth:`SQLiteWriteTxn.put_docs`; returns the first new seq."""
    count = len(docs)
    top = db.execute(
        "UPDATE dbs SET update_seq = update_seq + ? WHERE id = ? RETURNING update_seq", (count, db_id)
    ).fetchall()
    if not top:
        raise errors.db_not_found()
    first: int = top[0][0] - count + 1
    if drop_rows:
        db.executemany("DELETE FROM revs WHERE db_id = ? AND doc_id = ? AND rev = ?", drop_rows)
    # Clearing references costs an index probe per revision: skip it while the db has none.
    if unref_rows and db.execute("SELECT 1 FROM revision_blobs WHERE db_id = ? LIMIT 1", (db_id,)).fetchone():
        db.executemany("DELETE FROM revision_blobs WHERE db_id = ? AND doc_id = ? AND rev = ?", unref_rows)
    db.executemany(
        "INSERT INTO docs (db_id, doc_id, seq, winner_rev, deleted, leaves, tree)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (db_id, doc_id) DO UPDATE SET seq = excluded.seq,"
        " winner_rev = excluded.winner_rev, deleted = excluded.deleted,"
        " leaves = excluded.leaves, tree = excluded.tree",
        [(db_id, doc[0], seq, *doc[1:]) for seq, doc in enumerate(docs, first)],
    )
    if rev_rows:
        db.executemany(
            "INSERT OR REPLACE INTO revs (db_id, doc_id, rev, deleted, size, body) VALUES (?, ?, ?, ?, ?, ?)",
            rev_rows,
        )
    if blob_rows:
        db.executemany(
            "INSERT INTO revision_blobs (db_id, doc_id, rev, blob_key) VALUES (?, ?, ?, ?)", blob_rows
        )
    return first


_COUNTS_KEPT = 16
"""``count_changes`` results kept per db handle (one per replicator reading the feed)."""


def _begin(db: sqlite3.Connection, db_id: int | None) -> bool:
    """``BEGIN IMMEDIATE``, then whether the db ``db_id`` exists (``True`` for ``None``)."""
    db.execute("BEGIN IMMEDIATE")
    if db_id is None:
        return True
    return db.execute("SELECT 1 FROM dbs WHERE id = ?", (db_id,)).fetchone() is not None


async def _rollback_quietly(conn: aiosqlite.Connection) -> None:
    """``ROLLBACK``, ignoring "no transaction is active"."""
    try:
        await conn.execute("ROLLBACK")
    except sqlite3.OperationalError:
        pass
