"""``TodoStorage``: a couchpoint storage backend over the app's own SQLite file, which
mirrors one database into the app's plain ``todos`` table, both ways.

It implements couchpoint's storage protocol (:mod:`couchpoint.storage.base`; passes the
contract suite, ``tests/embedding/test_example_todos.py``) with its own tables
(``sync_*``) next to the app's ``todos`` table, in the same file:

* **Device → table.**  Every write to the mirrored database (``todos`` by default)
  projects the document's *winning* revision onto its row, in the same SQLite
  transaction: a live doc with a string ``title`` and ``owner`` is upserted as
  ``todos(id, owner, title, done)``; a deleted doc (or one that is no todo, like a design
  doc) has no row.  A rolled-back write leaves the table alone.
* **Table → devices.**  The app reads and writes ``todos`` with plain SQL and never
  hears of revisions.  Triggers record the ids of rows the *app* changed in
  ``sync_outbox`` (rows the backend itself writes are not recorded).  The backend turns
  each recorded row into a new revision of its document -- a child of the winning
  revision with the row's values (``"owner"``, ``"title"``, ``"done"``) over the
  winner's other fields, or a tombstone (keeping ``owner``) for a deleted row -- and
  gives it a new seq, so it shows in ``_changes`` and replicates.  This happens at the
  start of every write transaction on the mirrored database, before reads of it that
  find the outbox non-empty, and in :meth:`TodoStorage.update_seqs` (which couchpoint
  polls while ``_changes`` feeds wait, so live feeds see app edits within ~0.15 s).
  :meth:`TodoStorage.sync_app_edits` does it on demand.

Revision ids of app edits are ``N-<md5>`` of the parent rev and the new body, like
couchpoint's own.  An app edit of a conflicted doc extends the winning branch.

Concurrency: one writer connection (``BEGIN IMMEDIATE``; an ``asyncio.Lock`` orders
couchpoint's writers) and one reader connection, each on its own thread; WAL mode, so
reads see the last commit and never wait for the writer, and the app's own connections
wait at most their ``busy_timeout`` for a sync transaction.  Attachment bodies are files
named by their SHA-256 in ``<file>.blobs/``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import sqlite3
import tempfile
import time
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

from couchpoint import errors, revtree
from couchpoint.revs import format_rev
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

T = TypeVar("T")
RevKey = tuple[str, str]
CHUNK = 64 * 1024
BUSY_TIMEOUT_MS = 10_000

TODOS_TABLE = """
CREATE TABLE IF NOT EXISTS todos (
    id    TEXT    PRIMARY KEY,
    owner TEXT    NOT NULL,
    title TEXT    NOT NULL,
    done  INTEGER NOT NULL DEFAULT 0
);
"""
"""The app's table (the app may create it itself; this is idempotent)."""

SYNC_SCHEMA = """
CREATE TABLE IF NOT EXISTS sync_server (
    id           INTEGER PRIMARY KEY CHECK (id = 1),
    uuid         TEXT    NOT NULL,
    last_created INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS sync_dbs (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    name       TEXT    NOT NULL UNIQUE,
    update_seq INTEGER NOT NULL DEFAULT 0,
    revs_limit INTEGER NOT NULL DEFAULT 1000,
    created    TEXT    NOT NULL,
    security   TEXT
);
CREATE TABLE IF NOT EXISTS sync_docs (
    db_id   INTEGER NOT NULL,
    doc_id  TEXT    NOT NULL,
    seq     INTEGER NOT NULL,
    deleted INTEGER NOT NULL,
    leaves  TEXT    NOT NULL,  -- [[rev, deleted], ...] winner first
    tree    TEXT    NOT NULL,  -- couchpoint.revtree.to_json
    PRIMARY KEY (db_id, doc_id)
);
CREATE UNIQUE INDEX IF NOT EXISTS sync_docs_by_seq ON sync_docs (db_id, seq);
CREATE TABLE IF NOT EXISTS sync_revs (
    db_id   INTEGER NOT NULL,
    doc_id  TEXT    NOT NULL,
    rev     TEXT    NOT NULL,
    deleted INTEGER NOT NULL,
    body    TEXT    NOT NULL,
    blobs   TEXT    NOT NULL,  -- JSON list of blob keys
    PRIMARY KEY (db_id, doc_id, rev)
);
CREATE TABLE IF NOT EXISTS sync_local (
    db_id  INTEGER NOT NULL,
    doc_id TEXT    NOT NULL,
    rev    INTEGER NOT NULL,
    body   TEXT    NOT NULL,
    PRIMARY KEY (db_id, doc_id)
);
-- Ids of todos rows the app changed, not yet turned into revisions.
CREATE TABLE IF NOT EXISTS sync_outbox (doc_id TEXT PRIMARY KEY);
-- Holds a row only inside the backend's own write transactions (never committed), so
-- the triggers below can tell the backend's writes to `todos` from the app's.
CREATE TABLE IF NOT EXISTS sync_applying (id INTEGER PRIMARY KEY CHECK (id = 1));

CREATE TRIGGER IF NOT EXISTS todos_app_insert AFTER INSERT ON todos
WHEN NOT EXISTS (SELECT 1 FROM sync_applying)
BEGIN
    INSERT OR IGNORE INTO sync_outbox (doc_id) VALUES (NEW.id);
END;
CREATE TRIGGER IF NOT EXISTS todos_app_update AFTER UPDATE ON todos
WHEN NOT EXISTS (SELECT 1 FROM sync_applying)
BEGIN
    INSERT OR IGNORE INTO sync_outbox (doc_id) VALUES (OLD.id);
    INSERT OR IGNORE INTO sync_outbox (doc_id) VALUES (NEW.id);
END;
CREATE TRIGGER IF NOT EXISTS todos_app_delete AFTER DELETE ON todos
WHEN NOT EXISTS (SELECT 1 FROM sync_applying)
BEGIN
    INSERT OR IGNORE INTO sync_outbox (doc_id) VALUES (OLD.id);
END;
"""

ROW_FIELDS = ("owner", "title", "done")
"""Body fields that are columns of ``todos`` (besides ``_id`` = ``id``)."""


def row_of(doc_id: str, deleted: bool, body: dict[str, Any] | None) -> tuple[str, str, str, int] | None:
    """The ``todos`` row of a winning revision, or ``None`` if it is no (live) todo."""
    if deleted or body is None:
        return None
    owner, title = body.get("owner"), body.get("title")
    if not isinstance(owner, str) or not isinstance(title, str):
        return None
    return (doc_id, owner, title, 1 if body.get("done") is True else 0)


def body_of(row: sqlite3.Row | tuple[Any, ...], base: dict[str, Any] | None) -> dict[str, Any]:
    """A revision body for an app-edited row: the row's values over ``base`` (the winning
    body, whose other fields and attachments are kept)."""
    body = dict(base or {})
    body.update({"owner": row[1], "title": row[2], "done": bool(row[3])})
    return body


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _summary(doc_id: str, seq: int, leaves: str) -> DocSummary:
    return DocSummary(doc_id, seq, tuple((rev, bool(deleted)) for rev, deleted in json.loads(leaves)))


class _Conn:
    """One SQLite connection used from one dedicated thread."""

    def __init__(self, path: Path, name: str) -> None:
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=name)
        self._path = path
        self.conn: sqlite3.Connection | None = None

    def _open(self) -> None:
        conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        self.conn = conn

    async def open(self) -> None:
        await self.run(lambda: self._open())

    async def run(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        return await self.run(lambda: fn(self.conn, *args))

    async def close(self) -> None:
        if self.conn is not None:
            conn, self.conn = self.conn, None
            await self.run(conn.close)
        self._executor.shutdown(wait=True)


# -- synchronous SQL helpers (each runs on a connection's thread) ----------------------


def _get_docs(conn: sqlite3.Connection, db_id: int, ids: Sequence[str]) -> dict[str, DocInfo]:
    out: dict[str, DocInfo] = {}
    for doc_id in dict.fromkeys(ids):
        row = conn.execute(
            "SELECT seq, tree FROM sync_docs WHERE db_id = ? AND doc_id = ?", (db_id, doc_id)
        ).fetchone()
        if row is not None:
            out[doc_id] = DocInfo(doc_id, row[0], revtree.from_json(json.loads(row[1])))
    return out


def _get_summaries(conn: sqlite3.Connection, db_id: int, ids: Sequence[str]) -> dict[str, DocSummary]:
    out: dict[str, DocSummary] = {}
    for doc_id in dict.fromkeys(ids):
        row = conn.execute(
            "SELECT seq, leaves FROM sync_docs WHERE db_id = ? AND doc_id = ?", (db_id, doc_id)
        ).fetchone()
        if row is not None:
            out[doc_id] = _summary(doc_id, row[0], row[1])
    return out


def _get_revisions(conn: sqlite3.Connection, db_id: int, keys: Sequence[RevKey]) -> dict[RevKey, Revision]:
    out: dict[RevKey, Revision] = {}
    for doc_id, rev in dict.fromkeys(keys):
        row = conn.execute(
            "SELECT deleted, body, blobs FROM sync_revs WHERE db_id = ? AND doc_id = ? AND rev = ?",
            (db_id, doc_id, rev),
        ).fetchone()
        if row is not None:
            out[(doc_id, rev)] = Revision(
                doc_id, rev, bool(row[0]), json.loads(row[1]), tuple(json.loads(row[2]))
            )
    return out


def _get_local(conn: sqlite3.Connection, db_id: int, doc_id: str) -> LocalDoc | None:
    row = conn.execute(
        "SELECT rev, body FROM sync_local WHERE db_id = ? AND doc_id = ?", (db_id, doc_id)
    ).fetchone()
    return None if row is None else LocalDoc(doc_id, row[0], json.loads(row[1]))


def _db_row(conn: sqlite3.Connection, db_id: int) -> tuple[int, int]:
    row = conn.execute("SELECT update_seq, revs_limit FROM sync_dbs WHERE id = ?", (db_id,)).fetchone()
    return (row[0], row[1]) if row else (0, 1000)


class TodoTxn:
    """The writer's view inside :meth:`TodoDb.write` (runs on the writer thread)."""

    def __init__(self, db: TodoDb, conn: _Conn) -> None:
        self._db = db
        self._conn = conn

    async def get_docs(self, ids: Sequence[str]) -> dict[str, DocInfo]:
        return await self._conn.call(_get_docs, self._db.db_id, list(ids))

    async def get_revisions(self, keys: Sequence[RevKey]) -> dict[RevKey, Revision]:
        return await self._conn.call(_get_revisions, self._db.db_id, list(keys))

    async def put_docs(self, writes: Sequence[DocWrite]) -> list[int]:
        if not writes:
            return []
        return await self._conn.call(self._db._put_docs, list(writes))

    async def get_local(self, doc_id: str) -> LocalDoc | None:
        return await self._conn.call(_get_local, self._db.db_id, doc_id)

    async def put_local(self, doc: LocalDoc) -> None:
        def put(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT OR REPLACE INTO sync_local (db_id, doc_id, rev, body) VALUES (?, ?, ?, ?)",
                (self._db.db_id, doc.id, doc.rev, _dumps(doc.body)),
            )

        await self._conn.call(put)

    async def delete_local(self, doc_id: str) -> bool:
        def delete(conn: sqlite3.Connection) -> bool:
            cursor = conn.execute(
                "DELETE FROM sync_local WHERE db_id = ? AND doc_id = ?", (self._db.db_id, doc_id)
            )
            return cursor.rowcount > 0

        return await self._conn.call(delete)

    async def set_revs_limit(self, limit: int) -> None:
        await self._conn.call(
            lambda conn: conn.execute(
                "UPDATE sync_dbs SET revs_limit = ? WHERE id = ?", (limit, self._db.db_id)
            )
        )

    async def put_security(self, security: dict[str, Any]) -> None:
        await self._conn.call(
            lambda conn: conn.execute(
                "UPDATE sync_dbs SET security = ? WHERE id = ?", (_dumps(security), self._db.db_id)
            )
        )


class TodoDb:
    """One database.  The mirrored one (``mirrored``) projects into ``todos``."""

    def __init__(self, storage: TodoStorage, name: str, db_id: int, created: str) -> None:
        self.name = name
        self.db_id = db_id
        self.created = created
        self.mirrored = name == storage.table_db
        self._storage = storage

    # -- reads (reader connection; never wait for the writer) --------------------------
    async def _read(self, fn: Callable[..., T], *args: Any) -> T:
        if self.mirrored:
            await self._storage._fold_if_pending(self)
        return await self._storage._reader.call(fn, *args)

    async def info(self) -> DbInfo:
        def info(conn: sqlite3.Connection) -> DbInfo:
            conn.execute("BEGIN")
            try:
                seq, limit = _db_row(conn, self.db_id)
                live, deleted = conn.execute(
                    "SELECT count(*) FILTER (WHERE deleted = 0), count(*) FILTER (WHERE deleted = 1) "
                    "FROM sync_docs WHERE db_id = ?",
                    (self.db_id,),
                ).fetchone()
                active = conn.execute(
                    "SELECT coalesce(sum(length(body)), 0) FROM sync_revs WHERE db_id = ?", (self.db_id,)
                ).fetchone()[0]
                external = conn.execute(
                    "SELECT coalesce(sum(length(r.body)), 0) FROM sync_docs d JOIN sync_revs r "
                    "ON r.db_id = d.db_id AND r.doc_id = d.doc_id "
                    "AND r.rev = json_extract(d.leaves, '$[0][0]') WHERE d.db_id = ?",
                    (self.db_id,),
                ).fetchone()[0]
            finally:
                conn.execute("COMMIT")
            return DbInfo(
                name=self.name,
                update_seq=seq,
                doc_count=live,
                doc_del_count=deleted,
                instance_start_time=self.created,
                revs_limit=limit,
                sizes={"active": active, "external": external, "file": 0},
            )

        return await self._read(info)

    async def get_docs(self, ids: Sequence[str]) -> dict[str, DocInfo]:
        return await self._read(_get_docs, self.db_id, list(ids))

    async def get_summaries(self, ids: Sequence[str]) -> dict[str, DocSummary]:
        return await self._read(_get_summaries, self.db_id, list(ids))

    async def get_revisions(self, keys: Sequence[RevKey]) -> dict[RevKey, Revision]:
        return await self._storage._reader.call(_get_revisions, self.db_id, list(keys))

    async def changes(self, since: int, limit: int, *, descending: bool = False) -> list[DocSummary]:
        def changes(conn: sqlite3.Connection) -> list[DocSummary]:
            if descending:
                sql = "SELECT doc_id, seq, leaves FROM sync_docs WHERE db_id = ? ORDER BY seq DESC LIMIT ?"
                rows = conn.execute(sql, (self.db_id, limit))
            else:
                sql = (
                    "SELECT doc_id, seq, leaves FROM sync_docs WHERE db_id = ? AND seq > ? "
                    "ORDER BY seq LIMIT ?"
                )
                rows = conn.execute(sql, (self.db_id, since, limit))
            return [_summary(*row) for row in rows]

        return await self._read(changes)

    async def count_changes(self, since: int) -> int:
        def count(conn: sqlite3.Connection) -> int:
            sql = "SELECT count(*) FROM sync_docs WHERE db_id = ? AND seq > ?"
            return int(conn.execute(sql, (self.db_id, since)).fetchone()[0])

        return await self._read(count)

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
        # SQLite compares TEXT with memcmp on UTF-8: exactly _all_docs' byte order.
        where, args = ["db_id = ?", "deleted = 0"], [self.db_id]
        low, high = (end, start) if descending else (start, end)
        if low is not None:
            exclusive = descending and not inclusive_end
            where.append("doc_id > ?" if exclusive else "doc_id >= ?")
            args.append(low)
        if high is not None:
            exclusive = not descending and not inclusive_end
            where.append("doc_id < ?" if exclusive else "doc_id <= ?")
            args.append(high)
        order = "DESC" if descending else "ASC"
        sql = (
            f"SELECT doc_id, seq, leaves FROM sync_docs WHERE {' AND '.join(where)} "
            f"ORDER BY doc_id {order} LIMIT ? OFFSET ?"
        )
        args += [-1 if limit is None else limit, skip]
        return await self._read(lambda conn: [_summary(*row) for row in conn.execute(sql, args)])

    async def get_local(self, doc_id: str) -> LocalDoc | None:
        return await self._storage._reader.call(_get_local, self.db_id, doc_id)

    async def get_security(self) -> dict[str, Any] | None:
        def get(conn: sqlite3.Connection) -> dict[str, Any] | None:
            row = conn.execute("SELECT security FROM sync_dbs WHERE id = ?", (self.db_id,)).fetchone()
            return None if row is None or row[0] is None else json.loads(row[0])

        return await self._storage._reader.call(get)

    # -- writes (writer connection, one transaction at a time) ----------------------------
    @asynccontextmanager
    async def write(self) -> AsyncIterator[TodoTxn]:
        writer = self._storage._writer
        async with self._storage._write_lock:  # SQLite has one writer per file
            self._storage._write_owner = asyncio.current_task()
            try:
                await writer.call(lambda conn: conn.execute("BEGIN IMMEDIATE"))
                if self.mirrored:
                    await writer.call(self._fold_outbox)
                yield TodoTxn(self, writer)
            except BaseException:
                # Runs after whatever the cancelled call left queued on the writer thread.
                await asyncio.shield(writer.call(_rollback))
                raise
            await writer.call(lambda conn: conn.execute("COMMIT"))

    def _put_docs(self, conn: sqlite3.Connection, writes: Sequence[DocWrite]) -> list[int]:
        seq, _ = _db_row(conn, self.db_id)
        seqs = []
        for write in writes:
            seq += 1
            seqs.append(seq)
            leaves = revtree.leaf_summary(write.tree)
            conn.execute(
                "INSERT OR REPLACE INTO sync_docs (db_id, doc_id, seq, deleted, leaves, tree) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (
                    self.db_id,
                    write.id,
                    seq,
                    int(leaves[0][1]),
                    _dumps(leaves),
                    _dumps(revtree.to_json(write.tree)),
                ),
            )
            conn.executemany(
                "DELETE FROM sync_revs WHERE db_id = ? AND doc_id = ? AND rev = ?",
                [(self.db_id, write.id, rev) for rev in write.drop_revs],
            )
            conn.executemany(
                "INSERT OR REPLACE INTO sync_revs (db_id, doc_id, rev, deleted, body, blobs) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (self.db_id, write.id, r.rev, int(r.deleted), _dumps(r.body), _dumps(list(r.blobs)))
                    for r in write.revisions
                ],
            )
        conn.execute("UPDATE sync_dbs SET update_seq = ? WHERE id = ?", (seq, self.db_id))
        if self.mirrored:
            self._project(conn, [w.id for w in writes])
        return seqs

    def _project(self, conn: sqlite3.Connection, doc_ids: Sequence[str]) -> None:
        """Make the ``todos`` rows of ``doc_ids`` show their winning revisions."""
        conn.execute("INSERT OR IGNORE INTO sync_applying (id) VALUES (1)")
        try:
            for doc_id in doc_ids:
                summary = _get_summaries(conn, self.db_id, [doc_id]).get(doc_id)
                row = None
                if summary is not None and not summary.deleted:
                    winner = _get_revisions(conn, self.db_id, [(doc_id, summary.rev)])
                    revision = winner.get((doc_id, summary.rev))
                    row = row_of(doc_id, False, revision.body if revision else None)
                if row is None:
                    conn.execute("DELETE FROM todos WHERE id = ?", (doc_id,))
                else:
                    conn.execute(
                        "INSERT INTO todos (id, owner, title, done) VALUES (?, ?, ?, ?) "
                        "ON CONFLICT (id) DO UPDATE SET owner = excluded.owner, title = excluded.title, "
                        "done = excluded.done",
                        row,
                    )
        finally:
            conn.execute("DELETE FROM sync_applying")

    def _fold_outbox(self, conn: sqlite3.Connection) -> int:
        """Turn the app's recorded row edits into revisions (inside a write transaction).
        Returns how many documents got a new revision."""
        pending = [r[0] for r in conn.execute("SELECT doc_id FROM sync_outbox ORDER BY rowid")]
        if not pending:
            return 0
        _, revs_limit = _db_row(conn, self.db_id)
        writes: list[DocWrite] = []
        for doc_id in pending:
            write = self._app_edit(conn, doc_id, revs_limit)
            if write is not None:
                writes.append(write)
        conn.execute("DELETE FROM sync_outbox")
        if writes:
            self._put_docs(conn, writes)
        return len(writes)

    def _app_edit(self, conn: sqlite3.Connection, doc_id: str, revs_limit: int) -> DocWrite | None:
        row = conn.execute("SELECT id, owner, title, done FROM todos WHERE id = ?", (doc_id,)).fetchone()
        info = _get_docs(conn, self.db_id, [doc_id]).get(doc_id)
        tree = info.tree if info else revtree.RevTree.empty()
        parent = revtree.winner(tree)
        base: Revision | None = None
        if parent is not None:
            base = _get_revisions(conn, self.db_id, [(doc_id, format_rev(parent))]).get(
                (doc_id, format_rev(parent))
            )
        live = parent is not None and not tree[parent].deleted
        if row is None:
            if not live:
                return None  # nothing to delete
            owner = base.body.get("owner") if base else None
            body: dict[str, Any] = {} if owner is None else {"owner": owner}
            deleted = True
        else:
            body = body_of(row, base.body if base and live else None)
            if live and base is not None and base.body == body:
                return None  # the row already shows the winner (e.g. an edit undone)
            deleted = False
        parent_rev = format_rev(parent) if parent else None
        digest = hashlib.md5(_dumps([parent_rev, deleted, body]).encode(), usedforsecurity=False)
        key = ((parent[0] + 1) if parent else 1, digest.hexdigest())
        path = [*reversed(revtree.ancestry(tree, parent)), key] if parent else [key]
        merged, _ = revtree.merge(tree, path, deleted=deleted)
        stemmed = revtree.stem(merged, revs_limit)
        rev = format_rev(key)
        blobs = base.blobs if base is not None and not deleted and "_attachments" in body else ()
        return DocWrite(
            doc_id,
            stemmed,
            revisions=[Revision(doc_id, rev, deleted, body, tuple(blobs))],
            drop_revs=[format_rev(k) for k in merged if k not in stemmed],
        )


class TodoStorage:
    """couchpoint storage in the SQLite file ``path``, mirroring database ``table_db``
    into the app's ``todos`` table."""

    def __init__(self, path: str | os.PathLike[str], *, table_db: str = "todos") -> None:
        self.path = Path(path)
        self.table_db = table_db
        self.blob_dir = self.path.with_name(self.path.name + ".blobs")
        self._reader = _Conn(self.path, "todo-read")
        self._writer = _Conn(self.path, "todo-write")
        self._write_lock = asyncio.Lock()  # one SQLite writer for every database
        self._write_owner: asyncio.Task[Any] | None = None  # the task holding _write_lock
        self._dbs: dict[str, TodoDb] = {}
        self._opened = False

    # -- lifecycle ---------------------------------------------------------------------
    async def open(self) -> None:
        if self._opened:
            return
        self._opened = True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.blob_dir.mkdir(parents=True, exist_ok=True)
        self._reader = _Conn(self.path, "todo-read")
        self._writer = _Conn(self.path, "todo-write")
        await self._writer.open()

        def setup(conn: sqlite3.Connection) -> None:
            conn.executescript(TODOS_TABLE + SYNC_SCHEMA)
            conn.execute("INSERT OR IGNORE INTO sync_server (id, uuid) VALUES (1, ?)", (uuid.uuid4().hex,))

        await self._writer.call(setup)
        await self._reader.open()

    async def close(self) -> None:
        if not self._opened:
            return
        self._opened = False
        await self._reader.close()
        await self._writer.close()
        self._dbs.clear()

    # -- databases -----------------------------------------------------------------------
    async def server_uuid(self) -> str:
        row = await self._reader.call(lambda conn: conn.execute("SELECT uuid FROM sync_server").fetchone())
        return str(row[0])

    async def all_dbs(self) -> list[str]:
        rows = await self._reader.call(lambda conn: conn.execute("SELECT name FROM sync_dbs").fetchall())
        return sorted(row[0] for row in rows)

    async def create_db(self, name: str) -> TodoDb:
        def create(conn: sqlite3.Connection) -> tuple[int, str] | None:
            conn.execute("BEGIN IMMEDIATE")
            try:
                if conn.execute("SELECT 1 FROM sync_dbs WHERE name = ?", (name,)).fetchone():
                    return None
                last = conn.execute("SELECT last_created FROM sync_server").fetchone()[0]
                created = max(last + 1, time.time_ns() // 1000)
                conn.execute("UPDATE sync_server SET last_created = ?", (created,))
                cursor = conn.execute(
                    "INSERT INTO sync_dbs (name, created) VALUES (?, ?)", (name, str(created))
                )
                return int(cursor.lastrowid or 0), str(created)
            finally:
                conn.execute("COMMIT")

        async with self._write_lock:
            made = await self._writer.call(create)
        if made is None:
            raise errors.db_exists()
        db = TodoDb(self, name, *made)
        self._dbs[name] = db
        return db

    async def delete_db(self, name: str) -> None:
        def delete(conn: sqlite3.Connection) -> bool:
            conn.execute("BEGIN IMMEDIATE")
            try:
                row = conn.execute("SELECT id FROM sync_dbs WHERE name = ?", (name,)).fetchone()
                if row is None:
                    return False
                for table in ("sync_docs", "sync_revs", "sync_local"):
                    conn.execute(f"DELETE FROM {table} WHERE db_id = ?", (row[0],))
                conn.execute("DELETE FROM sync_dbs WHERE id = ?", (row[0],))
                if name == self.table_db:
                    conn.execute("INSERT OR IGNORE INTO sync_applying (id) VALUES (1)")
                    conn.execute("DELETE FROM todos")
                    conn.execute("DELETE FROM sync_applying")
                    conn.execute("DELETE FROM sync_outbox")
                return True
            finally:
                conn.execute("COMMIT")

        async with self._write_lock:
            deleted = await self._writer.call(delete)
        if not deleted:
            raise errors.db_not_found()
        self._dbs.pop(name, None)

    async def get_db(self, name: str) -> TodoDb | None:
        row = await self._reader.call(
            lambda conn: conn.execute("SELECT id, created FROM sync_dbs WHERE name = ?", (name,)).fetchone()
        )
        if row is None:
            self._dbs.pop(name, None)
            return None
        db = self._dbs.get(name)
        if db is None or db.db_id != row[0]:
            db = self._dbs[name] = TodoDb(self, name, row[0], row[1])
        return db

    async def update_seqs(self) -> dict[str, int]:
        await self.sync_app_edits()
        rows = await self._reader.call(
            lambda conn: conn.execute("SELECT name, update_seq FROM sync_dbs").fetchall()
        )
        return {name: seq for name, seq in rows}

    # -- app edits -------------------------------------------------------------------------
    async def sync_app_edits(self) -> bool:
        """Turn the app's pending row edits into revisions now.  False when there was
        nothing to do (or the mirrored database does not exist)."""
        db = await self.get_db(self.table_db)
        if db is None or not await self._reader.call(_outbox_pending):
            return False
        async with db.write():
            pass  # write() folds the outbox first
        return True

    async def _fold_if_pending(self, db: TodoDb) -> None:
        # A read inside the task that holds the write lock must not wait for it: the
        # holder folded the outbox when it began.
        if self._write_lock.locked() and self._write_owner is asyncio.current_task():
            return
        if await self._reader.call(_outbox_pending):
            async with db.write():
                pass

    # -- blobs -------------------------------------------------------------------------------
    def _blob_path(self, key: str) -> Path:
        return self.blob_dir / key

    async def put_blob(self, chunks: AsyncIterable[bytes], *, max_size: int | None = None) -> BlobInfo:
        sha, md5, size = hashlib.sha256(), hashlib.md5(usedforsecurity=False), 0
        fd, tmp_name = tempfile.mkstemp(dir=self.blob_dir, prefix=".upload-")
        try:
            with os.fdopen(fd, "wb") as out:
                async for chunk in chunks:
                    size += len(chunk)
                    if max_size is not None and size > max_size:
                        raise BlobTooLarge(f"more than {max_size} bytes")
                    sha.update(chunk)
                    md5.update(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            key = sha.hexdigest()
            target = self._blob_path(key)
            if target.exists():
                os.utime(target)  # fresh again for collect_garbage's grace period
                os.unlink(tmp_name)
            else:
                os.replace(tmp_name, target)
        except BaseException:
            if os.path.exists(tmp_name):
                os.unlink(tmp_name)
            raise
        return BlobInfo(key, size, "md5-" + base64.b64encode(md5.digest()).decode())

    async def blob_length(self, key: str) -> int | None:
        try:
            return self._blob_path(key).stat().st_size
        except FileNotFoundError:
            return None

    async def read_blob(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        try:
            blob = self._blob_path(key).open("rb")
        except FileNotFoundError:
            raise KeyError(key) from None
        with blob:
            blob.seek(start)
            left = None if end is None else max(0, end - start)
            while left is None or left > 0:
                chunk = blob.read(CHUNK if left is None else min(CHUNK, left))
                if not chunk:
                    return
                if left is not None:
                    left -= len(chunk)
                yield chunk

    async def collect_garbage(self, grace_s: float = 600.0) -> int:
        rows = await self._reader.call(
            lambda conn: conn.execute(
                "SELECT DISTINCT value FROM sync_revs, json_each(sync_revs.blobs)"
            ).fetchall()
        )
        referenced = {row[0] for row in rows}
        now = time.time()
        deleted = 0
        for path in self.blob_dir.iterdir():
            if path.name.startswith(".") or path.name in referenced:
                continue
            if now - path.stat().st_mtime >= grace_s:
                path.unlink()
                deleted += 1
        return deleted


def _rollback(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:
        conn.execute("ROLLBACK")


def _outbox_pending(conn: sqlite3.Connection) -> bool:
    return conn.execute("SELECT EXISTS (SELECT 1 FROM sync_outbox)").fetchone()[0] == 1
