"""A storage backend written the way a third party would write one.

It uses only the public storage protocol (:mod:`couchpoint.storage.base`), the tree
serialization of :mod:`couchpoint.revtree` and the two errors the protocol names
(:func:`couchpoint.errors.db_exists`, :func:`couchpoint.errors.db_not_found`); nothing
of :class:`~couchpoint.storage.memory.MemoryStorage` or
:class:`~couchpoint.storage.sqlite.SQLiteStorage`.

:class:`JournalStorage` keeps every database in memory and makes it durable with an
append-only journal: each committed transaction is one JSON line, ``fsync``-ed before
the transaction's block returns; :meth:`JournalStorage.open` replays the journal.
Attachment blobs are files named by their SHA-256 in ``<folder>/blobs``.

* Isolation: a transaction collects its writes in an overlay that only its own reads
  see; committing applies the overlay to the committed dicts in one synchronous step, so
  readers (which never lock) see either all of it or nothing.
* Serialization: one ``asyncio.Lock`` per database handle.
* Seqs: a per-database counter, journaled with each commit, so never reused.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import tempfile
import time
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

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

CHUNK = 64 * 1024
RevKey = tuple[str, str]


def _utf8(doc_id: str) -> bytes:
    return doc_id.encode("utf-8", "surrogatepass")


def _summary(info: DocInfo) -> DocSummary:
    return DocSummary(info.id, info.seq, tuple(info.leaves))


class _StoredRev:
    """A revision as kept in memory: the body as JSON text (so callers get copies)."""

    __slots__ = ("blobs", "body", "deleted")

    def __init__(self, deleted: bool, body: str, blobs: tuple[str, ...]) -> None:
        self.deleted = deleted
        self.body = body
        self.blobs = blobs

    def revision(self, key: RevKey) -> Revision:
        return Revision(key[0], key[1], self.deleted, json.loads(self.body), self.blobs)


class _Committed:
    """The committed state of one database."""

    def __init__(self, name: str, start_time: str) -> None:
        self.name = name
        self.start_time = start_time
        self.update_seq = 0
        self.revs_limit = 1000
        self.docs: dict[str, DocInfo] = {}
        self.revs: dict[RevKey, _StoredRev] = {}
        self.local: dict[str, tuple[int, str]] = {}
        self.security: str | None = None

    def apply(self, entry: dict[str, Any]) -> None:
        """Apply one journaled commit (also used when replaying the journal)."""
        for doc_id, seq, tree in entry["docs"]:
            self.docs[doc_id] = DocInfo(doc_id, seq, revtree.from_json(tree))
        for op in entry["revs"]:
            if op[0] == "drop":
                self.revs.pop((op[1], op[2]), None)
            else:
                _, doc_id, rev, deleted, body, blobs = op
                self.revs[(doc_id, rev)] = _StoredRev(deleted, body, tuple(blobs))
        for doc_id, value in entry["local"]:
            if value is None:
                self.local.pop(doc_id, None)
            else:
                self.local[doc_id] = (value[0], value[1])
        self.update_seq = entry["update_seq"]
        self.revs_limit = entry["revs_limit"]
        if "security" in entry:
            self.security = entry["security"]


class _Txn:
    """A write transaction: an overlay over the committed state."""

    def __init__(self, base: _Committed) -> None:
        self.base = base
        self.docs: dict[str, DocInfo] = {}
        self.revs: dict[RevKey, _StoredRev | None] = {}  # None: dropped
        self.rev_ops: list[list[Any]] = []
        self.local: dict[str, tuple[int, str] | None] = {}
        self.update_seq = base.update_seq
        self.revs_limit = base.revs_limit
        self.security: str | None = None
        self.security_set = False

    async def get_docs(self, ids: Sequence[str]) -> dict[str, DocInfo]:
        out = {}
        for doc_id in ids:
            info = self.docs.get(doc_id) or self.base.docs.get(doc_id)
            if info is not None:
                out[doc_id] = info
        return out

    async def get_revisions(self, keys: Sequence[RevKey]) -> dict[RevKey, Revision]:
        out = {}
        for key in keys:
            stored = self.revs[key] if key in self.revs else self.base.revs.get(key)
            if stored is not None:
                out[key] = stored.revision(key)
        return out

    async def put_docs(self, writes: Sequence[DocWrite]) -> list[int]:
        seqs = []
        for write in writes:
            self.update_seq += 1
            seqs.append(self.update_seq)
            self.docs[write.id] = DocInfo(write.id, self.update_seq, write.tree)
            for rev in write.drop_revs:
                self.revs[(write.id, rev)] = None
                self.rev_ops.append(["drop", write.id, rev])
            for r in write.revisions:
                body = json.dumps(r.body, ensure_ascii=False)
                self.revs[(write.id, r.rev)] = _StoredRev(r.deleted, body, tuple(r.blobs))
                self.rev_ops.append(["put", write.id, r.rev, r.deleted, body, list(r.blobs)])
        return seqs

    async def get_local(self, doc_id: str) -> LocalDoc | None:
        found = self.local[doc_id] if doc_id in self.local else self.base.local.get(doc_id)
        return None if found is None else LocalDoc(doc_id, found[0], json.loads(found[1]))

    async def put_local(self, doc: LocalDoc) -> None:
        self.local[doc.id] = (doc.rev, json.dumps(doc.body, ensure_ascii=False))

    async def delete_local(self, doc_id: str) -> bool:
        existed = await self.get_local(doc_id) is not None
        self.local[doc_id] = None
        return existed

    async def set_revs_limit(self, limit: int) -> None:
        self.revs_limit = limit

    async def put_security(self, security: dict[str, Any]) -> None:
        self.security = json.dumps(security)
        self.security_set = True

    def entry(self) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "op": "commit",
            "db": self.base.name,
            "docs": [[i, info.seq, revtree.to_json(info.tree)] for i, info in self.docs.items()],
            "revs": self.rev_ops,
            "local": [[i, None if v is None else list(v)] for i, v in self.local.items()],
            "update_seq": self.update_seq,
            "revs_limit": self.revs_limit,
        }
        if self.security_set:
            entry["security"] = self.security
        return entry


class JournalDb:
    """One database (a handle: the same object until the database is deleted)."""

    def __init__(self, storage: JournalStorage, state: _Committed) -> None:
        self.name = state.name
        self._storage = storage
        self._state = state
        self._lock = asyncio.Lock()

    async def info(self) -> DbInfo:
        s = self._state
        live = sum(1 for info in s.docs.values() if not info.leaves[0][1])
        winners = (s.revs.get((i, info.leaves[0][0])) for i, info in s.docs.items())
        external = sum(len(r.body) for r in winners if r is not None)
        active = sum(len(r.body) for r in s.revs.values())
        return DbInfo(
            name=self.name,
            update_seq=s.update_seq,
            doc_count=live,
            doc_del_count=len(s.docs) - live,
            instance_start_time=s.start_time,
            revs_limit=s.revs_limit,
            sizes={"active": active, "external": external, "file": 0},
        )

    async def get_docs(self, ids: Sequence[str]) -> dict[str, DocInfo]:
        return {i: self._state.docs[i] for i in ids if i in self._state.docs}

    async def get_summaries(self, ids: Sequence[str]) -> dict[str, DocSummary]:
        return {i: _summary(info) for i, info in (await self.get_docs(ids)).items()}

    async def get_revisions(self, keys: Sequence[RevKey]) -> dict[RevKey, Revision]:
        revs = self._state.revs
        return {key: revs[key].revision(key) for key in keys if key in revs}

    async def changes(self, since: int, limit: int, *, descending: bool = False) -> list[DocSummary]:
        infos = sorted(self._state.docs.values(), key=lambda info: info.seq, reverse=descending)
        if not descending:
            infos = [info for info in infos if info.seq > since]
        return [_summary(info) for info in infos[:limit]]

    async def count_changes(self, since: int) -> int:
        return sum(1 for info in self._state.docs.values() if info.seq > since)

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
        rows = sorted(
            (info for info in self._state.docs.values() if not info.leaves[0][1]),
            key=lambda info: _utf8(info.id),
            reverse=descending,
        )
        lo, hi = (None if start is None else _utf8(start)), (None if end is None else _utf8(end))

        def in_range(key: bytes) -> bool:
            if descending:
                before_start = lo is None or key <= lo
                after_end = hi is None or (key >= hi if inclusive_end else key > hi)
            else:
                before_start = lo is None or key >= lo
                after_end = hi is None or (key <= hi if inclusive_end else key < hi)
            return before_start and after_end

        picked = [_summary(info) for info in rows if in_range(_utf8(info.id))][skip:]
        return picked if limit is None else picked[:limit]

    async def get_local(self, doc_id: str) -> LocalDoc | None:
        found = self._state.local.get(doc_id)
        return None if found is None else LocalDoc(doc_id, found[0], json.loads(found[1]))

    async def get_security(self) -> dict[str, Any] | None:
        raw = self._state.security
        return None if raw is None else json.loads(raw)

    @asynccontextmanager
    async def write(self) -> AsyncIterator[_Txn]:
        async with self._lock:
            txn = _Txn(self._state)
            yield txn
            entry = txn.entry()
            self._storage._journal(entry)  # durable first ...
            self._state.apply(entry)  # ... then visible, in one synchronous step


class JournalStorage:
    """Databases in memory, made durable by a journal file in ``folder``."""

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)
        self.blob_dir = self.folder / "blobs"
        self.journal_path = self.folder / "journal.jsonl"
        self._dbs: dict[str, JournalDb] = {}
        self._uuid = ""
        self._last_start = 0
        self._file: Any = None

    # -- lifecycle -------------------------------------------------------------------
    async def open(self) -> None:
        if self._file is not None:
            return
        self.blob_dir.mkdir(parents=True, exist_ok=True)
        self._dbs = {}
        if self.journal_path.exists():
            with self.journal_path.open(encoding="utf-8") as journal:
                for line in journal:
                    if line.endswith("\n"):  # a torn last line is an unfinished commit
                        self._replay(json.loads(line))
        self._file = self.journal_path.open("a", encoding="utf-8")
        if not self._uuid:
            entry = {"op": "uuid", "uuid": uuid.uuid4().hex}
            self._journal(entry)
            self._replay(entry)

    async def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def _journal(self, entry: dict[str, Any]) -> None:
        self._file.write(json.dumps(entry, ensure_ascii=False) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())

    def _replay(self, entry: dict[str, Any]) -> None:
        op = entry["op"]
        if op == "uuid":
            self._uuid = entry["uuid"]
        elif op == "create":
            self._dbs[entry["db"]] = JournalDb(self, _Committed(entry["db"], entry["start"]))
            self._last_start = max(self._last_start, int(entry["start"]))
        elif op == "delete":
            self._dbs.pop(entry["db"], None)
        else:
            self._dbs[entry["db"]]._state.apply(entry)

    # -- databases -------------------------------------------------------------------
    async def server_uuid(self) -> str:
        return self._uuid

    async def all_dbs(self) -> list[str]:
        return sorted(self._dbs)

    async def create_db(self, name: str) -> JournalDb:
        if name in self._dbs:
            raise errors.db_exists()
        self._last_start = max(self._last_start + 1, time.time_ns() // 1000)
        entry = {"op": "create", "db": name, "start": str(self._last_start)}
        self._journal(entry)
        self._replay(entry)
        return self._dbs[name]

    async def delete_db(self, name: str) -> None:
        if name not in self._dbs:
            raise errors.db_not_found()
        entry = {"op": "delete", "db": name}
        self._journal(entry)
        self._replay(entry)

    async def get_db(self, name: str) -> JournalDb | None:
        return self._dbs.get(name)

    async def update_seqs(self) -> dict[str, int]:
        return {name: db._state.update_seq for name, db in self._dbs.items()}

    # -- blobs -----------------------------------------------------------------------
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
                os.utime(target)  # fresh again: the garbage collector's grace restarts
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
        path = self._blob_path(key)
        if not path.exists():
            raise KeyError(key)
        with path.open("rb") as blob:
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
        referenced = {
            key for db in self._dbs.values() for stored in db._state.revs.values() for key in stored.blobs
        }
        now = time.time()
        deleted = 0
        for path in self.blob_dir.iterdir():
            if path.name.startswith(".") or path.name in referenced:
                continue
            if now - path.stat().st_mtime >= grace_s:
                path.unlink()
                deleted += 1
        return deleted
