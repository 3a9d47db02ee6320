"""In-memory backend: the executable specification of the storage protocol.

Everything lives in Python dicts; nothing survives the process.  A write transaction
works on copies and swaps them in at commit, so readers always see committed state and a
failed transaction leaves nothing behind.  One ``asyncio.Lock`` per database serializes
writers.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import hashlib
import time
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import orjson

from couchpoint import errors
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

_CHUNK = 64 * 1024


def _utf8_key(doc_id: str) -> bytes:
    return doc_id.encode("utf-8", "surrogatepass")


@dataclass
class _State:
    docs: dict[str, DocInfo] = field(default_factory=dict)
    revisions: dict[tuple[str, str], Revision] = field(default_factory=dict)
    local: dict[str, LocalDoc] = field(default_factory=dict)
    update_seq: int = 0
    revs_limit: int = 1000
    security: dict[str, Any] | None = None


def _summary(info: DocInfo) -> DocSummary:
    return DocSummary(info.id, info.seq, tuple(info.leaves))


class _MemoryTxn:
    def __init__(self, state: _State) -> None:
        self.state = state

    async def get_docs(self, ids: Sequence[str]) -> dict[str, DocInfo]:
        return {i: self.state.docs[i] for i in ids if i in self.state.docs}

    async def get_revisions(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], Revision]:
        return {k: self.state.revisions[k] for k in keys if k in self.state.revisions}

    async def put_docs(self, writes: Sequence[DocWrite]) -> list[int]:
        seqs: list[int] = []
        for write in writes:
            self.state.update_seq += 1
            seq = self.state.update_seq
            self.state.docs[write.id] = DocInfo(write.id, seq, write.tree)
            for rev in write.drop_revs:
                self.state.revisions.pop((write.id, rev), None)
            for revision in write.revisions:
                self.state.revisions[(write.id, revision.rev)] = Revision(
                    revision.doc_id,
                    revision.rev,
                    revision.deleted,
                    copy.deepcopy(revision.body),
                    revision.blobs,
                )
            seqs.append(seq)
        return seqs

    async def get_local(self, doc_id: str) -> LocalDoc | None:
        return self.state.local.get(doc_id)

    async def put_local(self, doc: LocalDoc) -> None:
        self.state.local[doc.id] = LocalDoc(doc.id, doc.rev, copy.deepcopy(doc.body))

    async def delete_local(self, doc_id: str) -> bool:
        return self.state.local.pop(doc_id, None) is not None

    async def set_revs_limit(self, limit: int) -> None:
        self.state.revs_limit = limit

    async def put_security(self, security: dict[str, Any]) -> None:
        self.state.security = copy.deepcopy(security)


class MemoryDbStore:
    """One in-memory database (see :class:`couchpoint.storage.base.DbStore`)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._state = _State()
        self._lock = asyncio.Lock()
        self._created = f"{time.time_ns() // 1000}"

    async def info(self) -> DbInfo:
        docs = self._state.docs.values()
        deleted = sum(1 for d in docs if d.leaves[0][1])
        external = sum(len(orjson.dumps(r.body)) for r in self._state.revisions.values())
        return DbInfo(
            name=self.name,
            update_seq=self._state.update_seq,
            doc_count=len(self._state.docs) - deleted,
            doc_del_count=deleted,
            instance_start_time=self._created,
            revs_limit=self._state.revs_limit,
            sizes={"active": external, "external": external, "file": 0},
        )

    async def get_docs(self, ids: Sequence[str]) -> dict[str, DocInfo]:
        return {i: self._state.docs[i] for i in ids if i in self._state.docs}

    async def get_summaries(self, ids: Sequence[str]) -> dict[str, DocSummary]:
        return {i: _summary(self._state.docs[i]) for i in ids if i in self._state.docs}

    async def get_revisions(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], Revision]:
        return {k: self._state.revisions[k] for k in keys if k in self._state.revisions}

    async def changes(self, since: int, limit: int, *, descending: bool = False) -> list[DocSummary]:
        if descending:
            rows = sorted(self._state.docs.values(), key=lambda d: d.seq, reverse=True)
        else:
            rows = sorted((d for d in self._state.docs.values() if d.seq > since), key=lambda d: d.seq)
        return [_summary(d) for d in rows[:limit]]

    async def count_changes(self, since: int) -> int:
        return sum(1 for d in self._state.docs.values() if d.seq > since)

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
        live = [d for d in self._state.docs.values() if not d.leaves[0][1]]
        live.sort(key=lambda d: _utf8_key(d.id), reverse=descending)
        lo = None if start is None else _utf8_key(start)
        hi = None if end is None else _utf8_key(end)
        rows: list[DocSummary] = []
        for d in live:
            key = _utf8_key(d.id)
            if descending:
                if lo is not None and key > lo:
                    continue
                if hi is not None and (key < hi or (key == hi and not inclusive_end)):
                    break
            else:
                if lo is not None and key < lo:
                    continue
                if hi is not None and (key > hi or (key == hi and not inclusive_end)):
                    break
            rows.append(_summary(d))
        rows = rows[skip:]
        return rows if limit is None else rows[:limit]

    async def get_local(self, doc_id: str) -> LocalDoc | None:
        return self._state.local.get(doc_id)

    async def get_security(self) -> dict[str, Any] | None:
        return copy.deepcopy(self._state.security)

    @asynccontextmanager
    async def write(self) -> AsyncIterator[_MemoryTxn]:
        async with self._lock:
            staged = _State(
                docs=dict(self._state.docs),
                revisions=dict(self._state.revisions),
                local=dict(self._state.local),
                update_seq=self._state.update_seq,
                revs_limit=self._state.revs_limit,
                security=self._state.security,
            )
            yield _MemoryTxn(staged)
            self._state = staged


class MemoryStorage:
    """A server's databases in memory (see :class:`couchpoint.storage.base.Storage`)."""

    def __init__(self) -> None:
        self._dbs: dict[str, MemoryDbStore] = {}
        self._uuid = uuid.uuid4().hex
        self._blobs: dict[str, tuple[bytes, float]] = {}

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def server_uuid(self) -> str:
        return self._uuid

    async def all_dbs(self) -> list[str]:
        return sorted(self._dbs)

    async def create_db(self, name: str) -> MemoryDbStore:
        if name in self._dbs:
            raise errors.db_exists()
        store = MemoryDbStore(name)
        self._dbs[name] = store
        return store

    async def delete_db(self, name: str) -> None:
        if self._dbs.pop(name, None) is None:
            raise errors.db_not_found()

    async def get_db(self, name: str) -> MemoryDbStore | None:
        return self._dbs.get(name)

    async def update_seqs(self) -> dict[str, int]:
        return {name: store._state.update_seq for name, store in self._dbs.items()}

    # -- blobs ---------------------------------------------------------------------------
    async def put_blob(self, chunks: AsyncIterable[bytes], *, max_size: int | None = None) -> BlobInfo:
        sha = hashlib.sha256()
        md5 = hashlib.md5(usedforsecurity=False)
        parts: list[bytes] = []
        size = 0
        async for chunk in chunks:
            size += len(chunk)
            if max_size is not None and size > max_size:
                raise BlobTooLarge(size)
            sha.update(chunk)
            md5.update(chunk)
            parts.append(chunk)
        key = sha.hexdigest()
        if key not in self._blobs:
            self._blobs[key] = (b"".join(parts), time.monotonic())
        return BlobInfo(key, size, "md5-" + base64.b64encode(md5.digest()).decode())

    async def blob_length(self, key: str) -> int | None:
        blob = self._blobs.get(key)
        return None if blob is None else len(blob[0])

    async def read_blob(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        data = self._blobs[key][0]
        view = memoryview(data)[start:end]
        for offset in range(0, len(view), _CHUNK):
            yield bytes(view[offset : offset + _CHUNK])

    async def collect_garbage(self, grace_s: float = 600.0) -> int:
        referenced = {
            key
            for store in self._dbs.values()
            for revision in store._state.revisions.values()
            for key in revision.blobs
        }
        cutoff = time.monotonic() - grace_s
        doomed = [k for k, (_, born) in self._blobs.items() if k not in referenced and born <= cutoff]
        for key in doomed:
            del self._blobs[key]
        return len(doomed)
